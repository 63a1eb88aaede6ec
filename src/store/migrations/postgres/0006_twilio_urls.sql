-- What Twilio showed for a number's voice and SMS URLs after vapictl created or adopted it
-- (issue 13): `drift` compares Twilio with it to find a number repointed in the Twilio console.
CREATE TABLE vapictl_twilio_urls (
    user_id      uuid NOT NULL,
    phone_number text NOT NULL,
    account_sid  text NOT NULL,
    voice_url    text,
    sms_url      text,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, phone_number)
);

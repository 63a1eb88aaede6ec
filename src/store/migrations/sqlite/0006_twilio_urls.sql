-- What Twilio showed for a number's voice and SMS URLs after vapictl created or adopted it
-- (issue 13): `drift` compares Twilio with it to find a number repointed in the Twilio console.
CREATE TABLE vapictl_twilio_urls (
    user_id      TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    account_sid  TEXT NOT NULL,
    voice_url    TEXT,
    sms_url      TEXT,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, phone_number)
);

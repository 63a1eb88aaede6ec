-- The fencing token of a lease (issue 14): raised by one each time the lease passes to another
-- holder, and never reset — `vapictl serve`'s leader lease row is expired on release, not deleted,
-- so its epoch only grows. A replica checks that the row still carries its own epoch before it
-- starts writing; one that lost its lease finds a higher one and stops. Owner locks leave it at 0.
ALTER TABLE vapictl_locks ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

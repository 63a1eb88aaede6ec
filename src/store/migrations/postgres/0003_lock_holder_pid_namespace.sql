-- Where a lock's holder runs (the kernel's boot id and its pid namespace), so that a lease whose
-- holder ran on this machine and whose process is gone can be taken over at once instead of after
-- its lease expires. NULL for leases taken elsewhere or by older versions: those expire by TTL.
ALTER TABLE vapictl_locks ADD COLUMN holder_pid_namespace text;

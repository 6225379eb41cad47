//! Process limits the broker needs: one descriptor per connection.

/// Raises the open-file soft limit to the hard limit and returns the new soft limit. The
/// binary calls this at start and logs how many connections that allows.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

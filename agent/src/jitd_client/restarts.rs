//! How many times a dead compiler process is started again: a bounded number, so a
//! compiler that dies on every request (an LLVM abort on some input) ends as "profile
//! only" after a few tries instead of a crash loop.

/// Restarts granted to one process.
pub const DEFAULT_RESTARTS: u32 = 3;

/// The restart budget of one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarts {
    limit: u32,
    used: u32,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts::new(DEFAULT_RESTARTS)
    }
}

impl Restarts {
    /// A budget of `limit` restarts.
    pub fn new(limit: u32) -> Restarts {
        Restarts { limit, used: 0 }
    }

    /// The server died or stopped answering: whether to start another one (and count it).
    pub fn after_failure(&mut self) -> bool {
        if self.used < self.limit {
            self.used += 1;
            true
        } else {
            false
        }
    }

    /// Restarts used so far.
    pub fn used(&self) -> u32 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_restarts_then_none() {
        let mut r = Restarts::default();
        assert!(r.after_failure() && r.after_failure() && r.after_failure());
        assert!(!r.after_failure());
        assert!(!r.after_failure());
        assert_eq!(r.used(), 3);
        assert!(!Restarts::new(0).after_failure());
    }
}

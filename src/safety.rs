//! Safety gates (pure): checks a plan must pass before anything is applied.

use crate::plan::Plan;

/// When implicit deletes (entries that disappeared from the spec) need confirmation.
#[derive(Debug, Clone, Copy)]
pub struct DeleteThreshold {
    /// More than this many numbers…
    pub max_count: usize,
    /// …or more than this share of the owner's managed numbers (in percent).
    pub max_percent: usize,
}

impl Default for DeleteThreshold {
    fn default() -> Self {
        DeleteThreshold {
            max_count: 5,
            max_percent: 25,
        }
    }
}

/// A plan that a gate refused; exit code 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error(
        "refusing to delete {count} of {managed} managed numbers whose entries disappeared from the spec (more than {max_count} or {max_percent}%)\nhint: if that is intended, confirm the exact count with `--allow-deletes {count}`; to delete on purpose, mark entries `absent: true` instead"
    )]
    TooManyDeletes {
        count: usize,
        managed: usize,
        max_count: usize,
        max_percent: usize,
    },
    #[error(
        "`--allow-deletes {given}` does not match the plan, which deletes {count} numbers whose entries disappeared from the spec\nhint: review the plan; confirm with `--allow-deletes {count}` only if all of them should go"
    )]
    WrongDeleteCount { given: usize, count: usize },
}

impl DeleteThreshold {
    /// Whether `count` implicit deletes out of `managed` numbers exceed the threshold. There is
    /// no small-set exemption: deleting 1 of 2 numbers is 50%.
    pub fn exceeded(&self, count: usize, managed: usize) -> bool {
        count > self.max_count || count * 100 > self.max_percent * managed.max(1)
    }

    /// Checks the plan's implicit deletes against the threshold and the user's confirmation.
    ///
    /// # Errors
    /// [`GateRefusal`] when the deletes need a confirmation that was not given, or given with
    /// another count.
    pub fn check(&self, plan: &Plan, allow_deletes: Option<usize>) -> Result<(), GateRefusal> {
        let count = plan.implicit_deletes();
        if let Some(given) = allow_deletes
            && given != count
        {
            return Err(GateRefusal::WrongDeleteCount { given, count });
        }
        if count > 0 && self.exceeded(count, plan.managed_count) && allow_deletes != Some(count) {
            return Err(GateRefusal::TooManyDeletes {
                count,
                managed: plan.managed_count,
                max_count: self.max_count,
                max_percent: self.max_percent,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_have_no_loophole() {
        let t = DeleteThreshold::default();
        assert!(t.exceeded(1, 2), "1 of 2 is 50%");
        assert!(t.exceeded(1, 1), "the only number");
        assert!(!t.exceeded(1, 4), "25% is allowed");
        assert!(t.exceeded(2, 4));
        assert!(!t.exceeded(5, 100));
        assert!(t.exceeded(6, 1000), "more than 5 always needs confirmation");
    }
}

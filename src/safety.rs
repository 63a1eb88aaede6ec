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
    fn exceeded(&self, count: usize, managed: usize) -> bool {
        count > self.max_count || count * 100 > self.max_percent * managed.max(1)
    }

    /// Checks the plan's implicit deletes (numbers that would be released from Vapi because
    /// their entry disappeared) against the threshold, over the numbers vapictl could release
    /// ([`Plan::releasable_count`]), and the user's confirmation. A spec with no entries needs
    /// confirmation for any implicit delete.
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
        // The base is what vapictl could release: protected numbers, stale rows and numbers
        // outside its scope protect nothing and must not dilute the share (issue 9). An empty
        // `phoneNumbers` list always needs confirmation, whatever the share.
        let managed = plan.releasable_count;
        let needs_confirmation =
            count > 0 && (plan.spec_entries == 0 || self.exceeded(count, managed));
        if needs_confirmation && allow_deletes != Some(count) {
            return Err(GateRefusal::TooManyDeletes {
                count,
                managed,
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
    use crate::plan::{Action, Cause, Change, RowStep, VapiStep};

    fn deletes(n: usize, releasable: usize, spec_entries: usize) -> Plan {
        let delete = Change {
            number: "+14155550001".into(),
            action: Action::Delete,
            cause: Cause::RemovedFromSpec,
            fields: vec![],
            vapi: VapiStep::None,
            row: RowStep::None,
            observed: None,
            recorded: None,
        };
        Plan {
            changes: vec![delete; n],
            managed_count: 100,
            releasable_count: releasable,
            spec_entries,
            ..Plan::default()
        }
    }

    #[test]
    fn an_empty_list_always_needs_confirmation() {
        let t = DeleteThreshold::default();
        assert!(matches!(
            t.check(&deletes(1, 100, 0), None),
            Err(GateRefusal::TooManyDeletes { count: 1, .. })
        ));
        assert_eq!(t.check(&deletes(1, 100, 0), Some(1)), Ok(()));
        assert_eq!(
            t.check(&deletes(1, 100, 3), None),
            Ok(()),
            "1 of 100 with entries left"
        );
    }

    #[test]
    fn the_base_is_what_could_be_released_not_every_row() {
        // 1 delete among 4 rows of which 3 are protected, stale or of another provider.
        let t = DeleteThreshold::default();
        assert!(matches!(
            t.check(&deletes(1, 1, 2), None),
            Err(GateRefusal::TooManyDeletes { managed: 1, .. })
        ));
    }

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

//! What a command leaves for its batch to apply just before the commit: lane count changes
//! and audit entries. A command's effects join the batch only if the command succeeded, so a
//! command rolled back (alone in its savepoint, or with its whole batch) leaves no count and
//! no audit entry behind.

use super::counts::LaneDeltas;
use crate::AuditEntry;

/// Lane count changes and audit entries of one command, or of a whole batch.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Net change of delivery counts per lane and state.
    pub lanes: LaneDeltas,
    /// Audit entries, in the order the changes they record were made.
    pub audit: Vec<AuditEntry>,
}

impl Effects {
    /// Take over another command's effects, after this one's.
    pub(crate) fn merge(&mut self, other: Effects) {
        self.lanes.merge(other.lanes);
        self.audit.extend(other.audit);
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{error::CoreError, PrincipalId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    Approve,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: PrincipalId,
    pub decision: ApprovalDecision,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// `required` distinct approvers other than the requester have approved.
    Approved,
    /// An eligible approver denied; one denial ends the request.
    Denied {
        by: PrincipalId,
    },
    Pending {
        have: u32,
        need: u32,
    },
}

/// Checks that `approver` may record a decision at all: never the requester, once per approver.
pub fn check_can_decide(
    requester: &PrincipalId,
    approver: &PrincipalId,
    existing: &[Approval],
) -> Result<(), CoreError> {
    if requester == approver {
        return Err(CoreError::SelfApproval(requester.to_string()));
    }
    if existing.iter().any(|a| &a.approver == approver) {
        return Err(CoreError::AlreadyDecided(approver.to_string()));
    }
    Ok(())
}

/// Counts decisions for an N-of-M approval. Approvals by the requester, and repeated approvals by
/// one approver, never count, even if they somehow reached storage.
pub fn tally(requester: &PrincipalId, approvals: &[Approval], required: u32) -> Tally {
    let mut approvers: Vec<&PrincipalId> = Vec::new();
    for a in approvals.iter().filter(|a| &a.approver != requester) {
        match a.decision {
            ApprovalDecision::Deny => {
                return Tally::Denied {
                    by: a.approver.clone(),
                }
            }
            ApprovalDecision::Approve if !approvers.contains(&&a.approver) => {
                approvers.push(&a.approver)
            }
            ApprovalDecision::Approve => {}
        }
    }
    let have = approvers.len() as u32;
    if have >= required {
        Tally::Approved
    } else {
        Tally::Pending {
            have,
            need: required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PrincipalId {
        PrincipalId::parse(s).unwrap()
    }
    fn a(who: &str, d: ApprovalDecision) -> Approval {
        Approval {
            approver: p(who),
            decision: d,
            comment: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn two_of_m() {
        let alice = p("alice");
        let one = [a("bob", ApprovalDecision::Approve)];
        assert_eq!(tally(&alice, &one, 2), Tally::Pending { have: 1, need: 2 });
        let dup = [
            a("bob", ApprovalDecision::Approve),
            a("bob", ApprovalDecision::Approve),
        ];
        assert_eq!(tally(&alice, &dup, 2), Tally::Pending { have: 1, need: 2 });
        let selfish = [
            a("bob", ApprovalDecision::Approve),
            a("alice", ApprovalDecision::Approve),
        ];
        assert_eq!(
            tally(&alice, &selfish, 2),
            Tally::Pending { have: 1, need: 2 }
        );
        let two = [
            a("bob", ApprovalDecision::Approve),
            a("carol", ApprovalDecision::Approve),
        ];
        assert_eq!(tally(&alice, &two, 2), Tally::Approved);
        let denied = [
            a("bob", ApprovalDecision::Approve),
            a("carol", ApprovalDecision::Deny),
        ];
        assert_eq!(tally(&alice, &denied, 2), Tally::Denied { by: p("carol") });
    }

    #[test]
    fn self_approval_and_double_votes_refused() {
        let alice = p("alice");
        assert!(matches!(
            check_can_decide(&alice, &alice, &[]),
            Err(CoreError::SelfApproval(_))
        ));
        let existing = [a("bob", ApprovalDecision::Approve)];
        assert!(matches!(
            check_can_decide(&alice, &p("bob"), &existing),
            Err(CoreError::AlreadyDecided(_))
        ));
        assert!(check_can_decide(&alice, &p("carol"), &existing).is_ok());
    }
}

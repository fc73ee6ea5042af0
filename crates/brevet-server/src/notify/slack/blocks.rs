//! Block Kit for the approval message and the texts of direct messages, rendered from the
//! request as it is now (so a late or reordered update still shows the truth).

use brevet_core::{Approval, ApprovalDecision, Request, RequestState};
use serde_json::{json, Value};

pub const APPROVE: &str = "brevet_approve";
pub const DENY: &str = "brevet_deny";

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters (`<!channel>` pings everyone):
/// user-provided text is escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn names(approvals: &[Approval], decision: ApprovalDecision) -> Vec<String> {
    approvals
        .iter()
        .filter(|a| a.decision == decision)
        .map(|a| a.approver.to_string())
        .collect()
}

/// One line on where the request stands: `1 of 2 approvals: bob`, `Approved by bob, carol`…
pub fn status_line(r: &Request, approvals: &[Approval]) -> String {
    let approved = names(approvals, ApprovalDecision::Approve);
    let by = |v: &[String]| {
        if v.is_empty() {
            "policy".to_owned()
        } else {
            v.join(", ")
        }
    };
    match r.state {
        RequestState::Pending => {
            let mut s = format!("{} of {} approvals", approved.len(), r.approvals_required);
            if !approved.is_empty() {
                s += &format!(": {}", approved.join(", "));
            }
            s
        }
        RequestState::Denied => format!(
            "Denied by {}",
            names(approvals, ApprovalDecision::Deny).join(", ")
        ),
        RequestState::Cancelled => "Cancelled by the requester".into(),
        RequestState::Expired if approved.len() < r.approvals_required as usize => {
            "Expired without enough approvals".into()
        }
        RequestState::Expired => format!("Approved by {}; expired before use", by(&approved)),
        _ => format!("Approved by {}", by(&approved)),
    }
}

fn icon(state: RequestState) -> &'static str {
    match state {
        RequestState::Pending => ":hourglass_flowing_sand:",
        RequestState::Denied => ":x:",
        RequestState::Cancelled | RequestState::Expired => ":heavy_minus_sign:",
        _ => ":white_check_mark:",
    }
}

/// The approval message: fallback text and blocks. Buttons only while the request is pending.
pub fn approval_message(r: &Request, approvals: &[Approval]) -> (String, Value) {
    let status = status_line(r, approvals);
    let text = format!(
        "{} asks for {} on {} for {}: {}",
        r.requester, r.profile, r.resource, r.duration, status
    );
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Requester*\n{}", escape(r.requester.as_str()))}),
        json!({"type": "mrkdwn", "text": format!("*Access*\n`{}` on `{}`", escape(r.profile.as_str()), escape(&r.resource.to_string()))}),
        json!({"type": "mrkdwn", "text": format!("*Duration*\n{}", r.duration)}),
    ];
    if let Some(t) = &r.ticket {
        fields
            .push(json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", escape(&cut(t, 200)))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&format!("Access request: {} on {}", r.profile, r.resource), 150), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(reason) = &r.reason {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Reason*\n{}", escape(&cut(reason, 2900)))}}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("{} {}  ·  request `{}`", icon(r.state), escape(&status), r.id)}
    ]}));
    if r.state == RequestState::Pending {
        blocks.push(json!({"type": "actions", "block_id": "brevet_decision", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": r.id.to_string(),
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY, "style": "danger", "value": r.id.to_string(),
             "text": {"type": "plain_text", "text": "Deny"}},
        ]}));
    }
    (text, Value::Array(blocks))
}

/// A direct message to the requester about their request or grant; `None` for events that do
/// not concern them.
pub fn requester_message(event_type: &str, actor: &str, r: &Request) -> Option<String> {
    let what = format!(
        "`{}` on `{}`",
        escape(r.profile.as_str()),
        escape(&r.resource.to_string())
    );
    Some(match event_type {
        "request.approved" => format!(
            ":white_check_mark: Your request for {what} was approved by {}. Activate it with `brevet activate {}`.",
            escape(actor), r.id
        ),
        "request.denied" => format!(
            ":x: Your request for {what} was denied by {}.",
            escape(actor)
        ),
        "grant.revoked" => {
            let why = r.revoke_reason.as_deref().unwrap_or("revoked");
            format!(
                ":lock: Your access to {what} has ended ({}). Grant `{}`.",
                escape(why),
                r.id
            )
        }
        super::super::event::GRANT_EXPIRING => {
            let until = r.window.map(|w| w.expires_at)?;
            let minutes = (until - chrono::Utc::now()).num_minutes().max(0);
            format!(
                ":hourglass: Your access to {what} ends at {} UTC (in about {minutes} min). Need more time? `brevet extend {} --for 30m`.",
                until.format("%H:%M"),
                r.id
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use brevet_core::{
        GrantDuration, NewRequest, PrincipalId, ProfileName, RequestKind, ResourceId,
    };

    fn request(approvals: u32) -> Request {
        Request::new(
            NewRequest {
                kind: RequestKind::Access,
                requester: PrincipalId::parse("alice").unwrap(),
                resource: ResourceId::parse("postgres:orders").unwrap(),
                profile: ProfileName::parse("db.write").unwrap(),
                duration: GrantDuration::parse("30m").unwrap(),
                reason: Some("fix <!channel> & co".into()),
                ticket: Some("OPS-1".into()),
                approvals_required: approvals,
                policy_rule: "p".into(),
                max_extensions: 0,
                approve_within: std::time::Duration::from_secs(600),
                activate_within: std::time::Duration::from_secs(600),
            },
            chrono::Utc::now(),
        )
    }

    fn approval(who: &str, decision: ApprovalDecision) -> Approval {
        Approval {
            approver: PrincipalId::parse(who).unwrap(),
            decision,
            comment: None,
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn pending_message_has_buttons_and_progress() {
        let r = request(2);
        let (text, blocks) = approval_message(&r, &[]);
        assert!(text.contains("0 of 2 approvals"), "{text}");
        let all = blocks.to_string();
        assert!(
            all.contains("&lt;!channel&gt; &amp; co"),
            "user text is escaped: {all}"
        );
        let actions = blocks.as_array().unwrap().last().unwrap();
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["elements"][0]["action_id"], APPROVE);
        assert_eq!(actions["elements"][0]["style"], "primary");
        assert_eq!(actions["elements"][1]["action_id"], DENY);
        assert_eq!(actions["elements"][1]["style"], "danger");
        assert_eq!(actions["elements"][1]["value"], r.id.to_string());

        let one = [approval("bob", ApprovalDecision::Approve)];
        assert_eq!(status_line(&r, &one), "1 of 2 approvals: bob");
    }

    #[test]
    fn decided_message_has_no_buttons() {
        let mut r = request(1);
        r.deny().unwrap();
        let (_, blocks) = approval_message(&r, &[approval("carol", ApprovalDecision::Deny)]);
        assert!(!blocks.to_string().contains("\"actions\""));
        assert!(blocks.to_string().contains("Denied by carol"));
    }
}

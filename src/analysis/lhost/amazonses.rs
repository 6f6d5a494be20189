//! Amazon SES notifications delivered by e-mail (through Amazon SNS, or sent straight as
//! JSON): bounce, complaint and delivery events.
//!
//! SES bounces that travel as ordinary RFC 3464 reports need no module; this one reads the
//! JSON form. The body is either an SNS envelope (`{"Type": "Notification", "Message": "..."}`
//! whose `Message` is the event as a JSON string) or the event itself, recognised by its
//! `notificationType` (or `eventType`) key and a sender at `amazonaws.com`/`amazonses.com`.
//!
//! * `Bounce`: each of `bounce.bouncedRecipients` with its `action`, `status` and
//!   `diagnosticCode`;
//! * `Complaint`: a spam complaint about `complaint.complainedRecipients`, with the
//!   `complaintFeedbackType` as feedback type;
//! * `Delivery`: a delivery report for `delivery.recipients`, with the `smtpResponse`.
//!
//! Bounce events go through [`parse`] like any module's findings. Complaint and delivery
//! events are no bounces: the pipeline asks [`notification`] for them before the bounce
//! detectors, and takes the kind it names.
//!
//! Mailers that wrap long lines break the JSON with sendmail's `!` + newline + space; that
//! wrapping is undone before parsing.

use serde_json::Value;

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{Kind, Original, recipient_address, rfc3464, status};
use super::{Found, Notification};

/// The module entry: SES bounce events.
pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let n = read(mail)?;
    (n.kind == Kind::Bounce).then_some(Found {
        mta: "amazonses",
        recipients: n.recipients,
        original: Some(n.original),
    })
}

/// SES complaint and delivery events.
pub fn notification(mail: &Mail<'_>) -> Option<Notification> {
    read(mail).filter(|n| n.kind != Kind::Bounce)
}

fn read(mail: &Mail<'_>) -> Option<Notification> {
    let from = mail.from_address_str().unwrap_or_default();
    let from_aws = from.ends_with("amazonaws.com") || from.ends_with("amazonses.com");
    let text = mail.text.trim_start();
    if !from_aws || !text.starts_with('{') || !text.contains("otificationType") {
        return None;
    }
    let event = event_of(text)?;
    let kind = event
        .get("notificationType")
        .or_else(|| event.get("eventType"))
        .and_then(Value::as_str)?;
    let mail_obj = event.get("mail");
    let original = mail_obj.map(original_of).unwrap_or_default();
    let (kind, feedback_type, recipients) = match kind {
        "Bounce" => (Kind::Bounce, None, bounced(event.get("bounce")?)),
        "Complaint" => {
            let c = event.get("complaint")?;
            let list = addresses(c.get("complainedRecipients"), "emailAddress")
                .into_iter()
                .map(|address| Recipient {
                    address,
                    ..Recipient::default()
                })
                .collect();
            let ft = c
                .get("complaintFeedbackType")
                .and_then(Value::as_str)
                .unwrap_or("abuse")
                .to_ascii_lowercase();
            (Kind::Complaint, Some(ft), list)
        }
        "Delivery" => {
            let d = event.get("delivery")?;
            let response = d.get("smtpResponse").and_then(Value::as_str).unwrap_or("");
            let list = addresses(d.get("recipients"), "")
                .into_iter()
                .map(|address| Recipient {
                    address,
                    action: Some(crate::analysis::Action::Delivered),
                    status: status::find_enhanced(response),
                    reply_code: status::find_reply_code(response),
                    diagnostic: (!response.is_empty()).then(|| response.to_string()),
                    remote_mta: d
                        .get("reportingMTA")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ..Recipient::default()
                })
                .collect();
            (Kind::DeliveryReport, None, list)
        }
        _ => return None,
    };
    if recipients.is_empty() {
        return None;
    }
    Some(Notification {
        mta: "amazonses",
        kind,
        feedback_type,
        recipients,
        original,
    })
}

/// The SES event: the body's JSON, or the JSON string in an SNS envelope's `Message`.
fn event_of(text: &str) -> Option<Value> {
    let unwrapped = text.replace("!\n ", "").replace("!\r\n ", "");
    let mut stream = serde_json::Deserializer::from_str(&unwrapped).into_iter::<Value>();
    let outer = stream.next()?.ok()?;
    match outer.get("Message").and_then(Value::as_str) {
        Some(inner) => serde_json::from_str(inner).ok(),
        None => Some(outer),
    }
}

/// `bounce.bouncedRecipients` as failed recipients with their evidence.
fn bounced(bounce: &Value) -> Vec<Recipient> {
    let Some(list) = bounce.get("bouncedRecipients").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| {
            let address = r
                .get("emailAddress")
                .and_then(Value::as_str)
                .and_then(recipient_address)?;
            let diagnostic = r
                .get("diagnosticCode")
                .and_then(Value::as_str)
                .map(rfc3464::strip_type)
                .filter(|d| !d.is_empty());
            let field = r
                .get("status")
                .and_then(Value::as_str)
                .and_then(status::find_enhanced);
            let in_text = diagnostic.as_deref().and_then(status::find_enhanced);
            Some(Recipient {
                address,
                action: Some(crate::analysis::Action::parse(
                    r.get("action").and_then(Value::as_str).unwrap_or("failed"),
                )),
                status: status::prefer_specific(field, in_text),
                reply_code: diagnostic.as_deref().and_then(status::find_reply_code),
                diagnostic,
                ..Recipient::default()
            })
        })
        .collect()
}

/// Addresses in a JSON array, either strings or objects with the address under `key`.
fn addresses(list: Option<&Value>, key: &str) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v.get(key).and_then(Value::as_str)))
        .filter_map(recipient_address)
        .collect()
}

/// The original message as the event's `mail` object describes it.
fn original_of(m: &Value) -> Original {
    let common = m.get("commonHeaders");
    let first = |key: &str| {
        common
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_array().and_then(|a| a.first()).or(Some(v)))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Original {
        message_id: first("messageId").or_else(|| {
            m.get("messageId")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        from: first("from")
            .or_else(|| m.get("source").and_then(Value::as_str).map(str::to_string))
            .and_then(|f| {
                super::text::addresses(&f)
                    .next()
                    .map(str::to_ascii_lowercase)
            }),
        to: first("to").and_then(|t| {
            super::text::addresses(&t)
                .next()
                .map(str::to_ascii_lowercase)
        }),
        subject: first("subject"),
        date: first("date"),
        list_unsubscribe: None,
        campaign: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Notification {
        let raw = format!(
            "From: SES <no-reply@sns.amazonaws.com>\nTo: ops@example.net\n\
             Subject: AWS Notification Message\n\n{body}\n"
        );
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let n = read(&mail).expect("recognised");
        assert_eq!(parse(&mail).is_some(), n.kind == Kind::Bounce);
        assert_eq!(notification(&mail).is_some(), n.kind != Kind::Bounce);
        n
    }

    #[test]
    fn bounce_inside_an_sns_envelope() {
        let inner = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"bob@example.org","action":"failed","status":"5.0.0","diagnosticCode":"smtp; 550 5.1.1 no such user"}]},"mail":{"source":"alice@example.net","commonHeaders":{"from":["Alice <alice@example.net>"],"to":["bob@example.org"],"subject":"hi"}}}"#;
        let envelope = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        // Wrapped the way sendmail breaks long lines.
        let wrapped = format!("{}!\n {}", &envelope[..40], &envelope[40..]);
        let f = found(&wrapped);
        assert_eq!(f.kind, Kind::Bounce);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(r.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
        assert_eq!(f.original.from.as_deref(), Some("alice@example.net"));
    }

    #[test]
    fn complaint_and_delivery_events() {
        let f = found(
            r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"carol@example.org"}],"complaintFeedbackType":"abuse"},"mail":{"source":"alice@example.net"}}"#,
        );
        assert_eq!(f.kind, Kind::Complaint);
        assert_eq!(f.feedback_type.as_deref(), Some("abuse"));
        assert_eq!(f.recipients[0].address, "carol@example.org");

        let f = found(
            r#"{"notificationType":"Delivery","delivery":{"recipients":["dave@example.org"],"smtpResponse":"250 2.6.0 Message received","reportingMTA":"a1.smtp-out.amazonses.com"}}"#,
        );
        assert_eq!(f.kind, Kind::DeliveryReport);
        let r = &f.recipients[0];
        assert_eq!(r.action, Some(crate::analysis::Action::Delivered));
        assert_eq!(r.status.as_deref(), Some("2.6.0"));
        assert_eq!(r.reply_code, Some(250));
    }
}

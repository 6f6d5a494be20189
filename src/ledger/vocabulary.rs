//! The shared vocabulary as SQL: each word the ledger stores (a message's kind, a verdict's
//! label, reason and phase, a DSN action, an address's state and suppression reason, an
//! event's role, a return path's signature) converts to and from its column text here and nowhere else, so that a typo in
//! a query string cannot silently become a new state.

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

use super::policy::{State, SuppressionReason};
use crate::analysis::{Action, Kind, Label, Phase, Reason, Signature};

/// Who an event is about, as the `events.role` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An address a report names (bounced, delayed, delivered, complained about).
    Recipient,
    /// The author of the message (an auto-reply or a person's reply proves the address alive).
    Sender,
    /// An operator's action (`reactivate`).
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recipient => "recipient",
            Role::Sender => "sender",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Recipient, Role::Sender, Role::Operator]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A column text that names none of a type's values: a corrupt or foreign database.
fn unknown(what: &str, value: &str) -> FromSqlError {
    FromSqlError::Other(format!("unknown {what} {value:?} in the ledger").into())
}

/// `ToSql` as the word, `FromSql` through the type's parser.
macro_rules! sql_word {
    ($ty:ty, $what:literal, $as_str:expr, $parse:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                fn text(v: &$ty) -> &str {
                    $as_str(v)
                }
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(text(self).as_bytes())))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $parse(text).ok_or_else(|| unknown($what, text))
            }
        }
    };
}

sql_word!(Kind, "kind", |k: &Kind| k.as_str(), Kind::parse);
sql_word!(Label, "label", |l: &Label| l.as_str(), Label::parse);
sql_word!(Reason, "reason", |r: &Reason| r.as_str(), Reason::parse);
sql_word!(Phase, "phase", |p: &Phase| p.as_str(), Phase::parse);
sql_word!(State, "state", |s: &State| s.as_str(), State::parse);
sql_word!(
    SuppressionReason,
    "suppression reason",
    |r: &SuppressionReason| r.as_str(),
    SuppressionReason::parse
);
sql_word!(Role, "role", |r: &Role| r.as_str(), Role::parse);
sql_word!(
    Signature,
    "signature",
    |s: &Signature| s.as_str(),
    Signature::parse
);
sql_word!(Action, "action", Action::as_str, |s: &str| Some(
    Action::parse(s)
));

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn every_word_round_trips_and_unknown_words_are_errors() {
        let conn = Connection::open_in_memory().unwrap();
        let back = |v: &dyn ToSql| -> String {
            conn.query_row("SELECT ?1", [v], |r| r.get::<_, String>(0))
                .unwrap()
        };
        for k in Kind::ALL {
            assert_eq!(back(&k), k.as_str());
            let again: Kind = conn.query_row("SELECT ?1", [k], |r| r.get(0)).unwrap();
            assert_eq!(again, k);
        }
        for r in Reason::ALL {
            let again: Reason = conn.query_row("SELECT ?1", [r], |x| x.get(0)).unwrap();
            assert_eq!(again, *r);
        }
        for p in Phase::ALL {
            let again: Phase = conn.query_row("SELECT ?1", [p], |x| x.get(0)).unwrap();
            assert_eq!(again, p);
        }
        for s in Signature::ALL {
            let again: Signature = conn.query_row("SELECT ?1", [s], |x| x.get(0)).unwrap();
            assert_eq!(again, s);
        }
        let bad: rusqlite::Result<State> = conn.query_row("SELECT 'asleep'", [], |r| r.get(0));
        assert!(bad.is_err());
        let a: Action = conn
            .query_row("SELECT 'delivered (to mailbox)'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(a, Action::Delivered);
    }
}

//! `carerp-operator dlq list|show|replay`: a tenant's dead letters from the command line, for
//! the platform engineer (garage owners have the same in the REST API). The work is the
//! kit's ([`carerp_kit::dead_letter`]); this formats it.

use std::fmt::Write as _;

use async_nats::jetstream;
use carerp_kit::dead_letter::{self, DeadLetter, Filter};

/// What to do with the dead letters.
#[derive(Debug, Clone)]
pub enum Action {
    List(Filter),
    Show(u64),
    Replay(Vec<u64>),
}

/// A tenant id is a DNS label: anything else names no stream of ours.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !tenant.starts_with('-')
        && !tenant.ends_with('-');
    ok.then_some(())
        .ok_or_else(|| format!("{tenant:?} is no tenant id (a DNS label)"))
}

/// Runs `action` on `tenant`'s dead letters and answers what to print.
pub async fn execute(
    js: &jetstream::Context,
    tenant: &str,
    action: &Action,
) -> anyhow::Result<String> {
    check_tenant(tenant).map_err(anyhow::Error::msg)?;
    match action {
        Action::List(filter) => Ok(table(&dead_letter::list(js, tenant, filter).await?)),
        Action::Show(sequence) => match dead_letter::get(js, tenant, *sequence).await? {
            Some(letter) => Ok(format!("{}\n", serde_json::to_string_pretty(&letter)?)),
            None => anyhow::bail!("tenant {tenant} has no dead letter {sequence}"),
        },
        Action::Replay(sequences) => {
            let mut out = String::new();
            for sequence in sequences {
                match dead_letter::replay(js, tenant, *sequence).await? {
                    Some(letter) => writeln!(
                        out,
                        "replayed dead letter {sequence} ({} of {}) to {}",
                        letter.topic, letter.consumer, letter.original_subject
                    )?,
                    None => anyhow::bail!("{out}tenant {tenant} has no dead letter {sequence}"),
                }
            }
            Ok(out)
        }
    }
}

/// One line per dead letter, oldest first.
pub fn table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".into();
    }
    let mut out = format!(
        "{:<8} {:<10} {:<28} {:>8}  {:<24} {:<36}  ERROR\n",
        "SEQUENCE", "CONSUMER", "TOPIC", "ATTEMPTS", "DEAD-LETTERED", "EVENT"
    );
    for l in letters {
        let at = l
            .dead_lettered_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let event = l.event_id.map(|id| id.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<28} {:>8}  {:<24} {:<36}  {}",
            l.sequence, l.consumer, l.topic, l.attempts, at, event, l.error
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dns_labels_name_a_tenant() {
        assert!(check_tenant("acme-motors").is_ok());
        for bad in ["", "Acme", "acme.motors", "-acme", "a>", "acme*"] {
            assert!(check_tenant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_dead_letters_says_so() {
        assert_eq!(table(&[]), "no dead letters\n");
    }
}

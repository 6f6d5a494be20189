//! Which rule patterns can match a diagnostic at all, from one pass over it.
//!
//! Every match of most patterns starts with one of a few literals (`mailbox full`, `over
//! quota`, `user unknown`...); `regex-syntax` lists them. One Aho-Corasick automaton over the
//! literals of all patterns tells, in a single scan of the diagnostic, which patterns have a
//! possible start in it; only those (and the patterns without such a list) are run. Running
//! thirty-odd regexes one after the other over every diagnostic walked thirty-odd lazy DFAs
//! whose tables do not fit in the cache together: a sixth of the analysis' time.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// The literals of a pattern set, each tagged with the pattern whose matches start with it.
#[derive(Debug)]
pub struct Prefilter {
    starts: AhoCorasick,
    /// Pattern index of each literal in `starts`.
    owner: Vec<usize>,
    /// Patterns with no finite list of starting literals: always run.
    always: Vec<bool>,
}

impl Prefilter {
    /// Builds the prefilter for compiled patterns (the same strings the regexes were built
    /// from, with the same default syntax options).
    pub fn new(patterns: &[String]) -> Result<Prefilter, String> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::with_capacity(patterns.len());
        for (i, pattern) in patterns.iter().enumerate() {
            match starting_literals(pattern) {
                Some(lits) => {
                    owner.extend(std::iter::repeat_n(i, lits.len()));
                    literals.extend(lits);
                    always.push(false);
                }
                None => always.push(true),
            }
        }
        let starts = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&literals)
            .map_err(|e| format!("rule pattern literals: {e}"))?;
        Ok(Prefilter {
            starts,
            owner,
            always,
        })
    }

    /// For each pattern, whether it may match `haystack`: false only when none of the
    /// literals every match of it starts with occurs in the haystack.
    pub fn candidates(&self, haystack: &str) -> Vec<bool> {
        let mut out = self.always.clone();
        for m in self.starts.find_overlapping_iter(haystack) {
            out[self.owner[m.pattern().as_usize()]] = true;
        }
        out
    }
}

/// The literals every match of `pattern` starts with, or `None` when there is no such finite
/// list (a pattern that can start anywhere, or one that can match the empty string).
fn starting_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    // A prefix of a starting literal is a starting literal too: short ones keep the automaton
    // small (a few hundred states instead of thousands) at the price of a few more patterns
    // run for nothing.
    let mut out: Vec<Vec<u8>> = literals
        .iter()
        .map(|l| l.as_bytes()[..l.len().min(START_LEN)].to_vec())
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

/// Bytes of each starting literal kept; see [`starting_literals`].
const START_LEN: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_patterns_whose_start_occurs_are_candidates() {
        let patterns = [
            "mailbox (is )?full|over ?quota".to_string(),
            "user (unknown|not found)".to_string(),
            r"\S+ blocked".to_string(),
        ];
        let p = Prefilter::new(&patterns).unwrap();
        assert_eq!(p.candidates("552 5.2.2 overquota"), vec![true, false, true]);
        assert_eq!(p.candidates("550 user not found"), vec![false, true, true]);
    }
}

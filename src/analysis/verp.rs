//! VERP (variable envelope return paths) and signed return paths: who a bounce is about, read
//! from the address it was delivered to, and whether that address is one we issued.
//!
//! A sender that mails `carl@example.org` from the return path `bounces@mail.example.com`
//! sets the envelope sender (`MAIL FROM`) to
//!
//! ```text
//! bounces+carl=example.org@mail.example.com              unsigned
//! bounces+carl=example.org+k3vq7d2m@mail.example.com     signed (a key is configured)
//! ```
//!
//! Every bounce goes back to the envelope sender, so whatever the notice says (or fails to
//! say), the address it is delivered to names the recipient that failed. The format, with the
//! delimiters `D1 D2` (`+=` by default; qmail sites use `-=`):
//!
//! ```text
//! {return-path local part} D1 {recipient local part} D2 {recipient domain} [D1 {tag}] @ {return-path domain}
//! ```
//!
//! - The recipient address is lowercased first (rebound keys its ledger on lowercased
//!   addresses; some receiving MTAs lowercase local parts, so the tag must not depend on
//!   case). Only a plain dot-atom address can be carried: a quoted local part
//!   (`"a b"@example.org`, `"x@y"@example.org`), a non-ASCII address or a domain literal is
//!   refused by [`Verp::encode`].
//! - The recipient's local part is written as it is, even when it contains `D1` or `D2`
//!   (`a+b=c@example.org` → `bounces+a+b=c=example.org@...`). Decoding is still unambiguous:
//!   the return path's own local part is known (it is configured), a domain never contains
//!   `D2`, so the recipient's domain starts after the *last* `D2`; and the tag, when present,
//!   is the last 9 characters: `D1` and 8 characters of the base32 alphabet (`a`-`z`, `2`-`7`).
//!   (With `-` as `D1`, a domain ending in `-` and 8 such characters would be read as a tag;
//!   no top-level domain has that shape.)
//! - The tag is HMAC-SHA256 keyed with the first configured key over the lowercased recipient
//!   address (`carl@example.org`, nothing else), its first 5 bytes written in RFC 4648 base32,
//!   lowercase, without padding: exactly 8 characters. Any configured key verifies (rotation:
//!   add the new key first, keep the old ones while mail signed with them can still bounce).
//!   Tags are compared case-insensitively and in constant time.
//!
//! Where the address is read: the bounce's `To` (MTAs address a bounce to the envelope sender
//! it returns), and the headers delivery agents add with the envelope recipient:
//! `X-Original-To` and `Delivered-To` (Postfix local/virtual/pipe, Dovecot LDA/LMTP, qmail,
//! Gmail), `Envelope-To` (Exim's `envelope_to_add`) and `X-Envelope-To` (fetchmail's default,
//! some milters). `Return-Path` is the *sender* of the bounce (`<>`), never its recipient. A
//! signed address that verifies wins over any other; else the first found, in that order.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::mail::Mail;

/// Length of a tag, in base32 characters (5 bytes of the HMAC).
pub const TAG_LEN: usize = 8;
const TAG_BYTES: usize = 5;
/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// The default delimiters: Postfix's `default_verp_delimiters`, Mailman's format.
pub const DEFAULT_DELIMITERS: &str = "+=";
/// Characters a delimiter may be: the specials of an RFC 5322 dot-atom (so that the return
/// path stays an unquoted address). Postfix accepts `-=+` by default.
const DELIMITER_CHARS: &str = "+=-_!#$%&'*/?^`{|}~";
/// The headers read, in order of preference for unsigned addresses.
pub const HEADERS: &[&str] = &[
    "To",
    "X-Original-To",
    "Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
];
/// The most VERP addresses one message's headers are checked for (each may cost an HMAC per
/// key): a real bounce has one or two.
const MAX_CANDIDATES: usize = 64;

/// What the tag of a return path says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// The tag verifies with one of the configured keys.
    Valid,
    /// A tag is there and verifies with none of the keys: not a return path we issued.
    Invalid,
    /// Keys are configured, the address carries no tag (mail sent before signing started, or
    /// a forgery).
    Missing,
    /// No key is configured: return paths are not signed.
    None,
}

impl Signature {
    pub const ALL: [Signature; 4] = [
        Signature::Valid,
        Signature::Invalid,
        Signature::Missing,
        Signature::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signature::Valid => "valid",
            Signature::Invalid => "invalid",
            Signature::Missing => "missing",
            Signature::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Signature> {
        Signature::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A VERP address found in a message, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    /// The recipient it names, lowercased: the address the ledger keys the bounce on.
    pub address: String,
    /// The address the message was delivered to, as found (lowercased).
    pub return_path: String,
    pub signature: Signature,
}

/// A configured return path: the address whose local part VERP extends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReturnPath {
    local: String,
    domain: String,
}

/// The `[verp]` settings, keys resolved: a value handed to the analysis with the rule set.
pub struct Verp {
    return_paths: Vec<ReturnPath>,
    /// Before the recipient (and before the tag), and before the recipient's domain.
    d1: char,
    d2: char,
    /// The first signs; all verify. Empty: unsigned return paths.
    keys: Vec<Vec<u8>>,
    require_signature: bool,
    fingerprint: String,
}

impl std::fmt::Debug for Verp {
    // Never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verp")
            .field("return_paths", &self.return_paths)
            .field("delimiters", &format!("{}{}", self.d1, self.d2))
            .field("keys", &self.keys.len())
            .field("require_signature", &self.require_signature)
            .finish()
    }
}

impl Verp {
    /// Checks and builds the settings. Errors are sentences about the setting at fault (never
    /// quoting a key).
    pub fn new(
        return_paths: &[String],
        delimiters: &str,
        keys: Vec<Vec<u8>>,
        require_signature: bool,
    ) -> Result<Verp, String> {
        let (d1, d2) = parse_delimiters(delimiters)?;
        let mut parsed = Vec::new();
        for rp in return_paths {
            let (local, domain) = split_address(rp)
                .map_err(|why| format!("return_paths: {rp:?} is not a plain address ({why})"))?;
            parsed.push(ReturnPath { local, domain });
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_LEN) {
            return Err(key_too_short(short));
        }
        if require_signature && keys.is_empty() {
            return Err(
                "require_signature = true needs a key: set key_env or key_file in [verp]".into(),
            );
        }
        let mut h = Sha256::new();
        h.update(b"rebound-verp-1\0");
        for rp in &parsed {
            h.update(format!("{}@{}\0", rp.local, rp.domain));
        }
        h.update(format!("{d1}{d2}{}\0", u8::from(require_signature)));
        for k in &keys {
            h.update(Sha256::digest(k));
        }
        let fingerprint = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Verp {
            return_paths: parsed,
            d1,
            d2,
            keys,
            require_signature,
            fingerprint,
        })
    }

    /// Names these settings (return paths, delimiters, requirement and a hash of the keys):
    /// stored with every message analysed with them, so that `reclassify` knows which
    /// verdicts other settings decided. It reveals nothing of the keys.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether return paths are signed (a key is configured).
    pub fn signs(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn require_signature(&self) -> bool {
        self.require_signature
    }

    /// How many keys verify.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The configured return paths, as written in the config (lowercased).
    pub fn return_paths(&self) -> impl Iterator<Item = String> + '_ {
        self.return_paths
            .iter()
            .map(|rp| format!("{}@{}", rp.local, rp.domain))
    }

    /// The return path to use for mail to `address` (signed with the first key, if any).
    pub fn encode(&self, return_path: &str, address: &str) -> Result<String, String> {
        let (rp_local, rp_domain) = split_address(return_path)
            .map_err(|why| format!("the return path {return_path} is not usable: {why}"))?;
        let (local, domain) = split_address(address)
            .map_err(|why| format!("{address} cannot be carried in a return path: {why}"))?;
        let (d1, d2) = (self.d1, self.d2);
        let mut out = format!("{rp_local}{d1}{local}{d2}{domain}");
        if let Some(key) = self.keys.first() {
            out.push(d1);
            out.push_str(&tag(key, &format!("{local}@{domain}")));
        }
        out.push('@');
        out.push_str(&rp_domain);
        Ok(out)
    }

    /// Decodes an address if it is a VERP extension of a configured return path.
    pub fn decode(&self, address: &str) -> Option<Decoded> {
        let seen = address
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_lowercase();
        let (local, domain) = seen.rsplit_once('@')?;
        let rest = self
            .return_paths
            .iter()
            .filter(|rp| rp.domain == domain)
            .filter_map(|rp| {
                let rest = local
                    .strip_prefix(rp.local.as_str())?
                    .strip_prefix(self.d1)?;
                Some((rp.local.len(), rest))
            })
            .max_by_key(|(len, _)| *len)?
            .1;
        let (user, tail) = rest.rsplit_once(self.d2)?;
        let (recipient_domain, tag) = split_tag(tail, self.d1);
        if user.is_empty()
            || user.contains(['@', '"', '\\'])
            || user.chars().any(|c| c.is_whitespace() || c.is_control())
            || check_domain(recipient_domain).is_err()
        {
            return None;
        }
        let recipient = format!("{user}@{recipient_domain}");
        let signature = match (self.keys.is_empty(), tag) {
            (true, _) => Signature::None,
            (false, None) => Signature::Missing,
            (false, Some(t)) if self.verifies(t, &recipient) => Signature::Valid,
            (false, Some(_)) => Signature::Invalid,
        };
        Some(Decoded {
            address: recipient,
            return_path: seen.clone(),
            signature,
        })
    }

    /// Whether `tag` is the tag of `address` under one of the keys.
    fn verifies(&self, tag: &str, address: &str) -> bool {
        let Ok(bytes) = data_encoding::BASE32_NOPAD.decode(tag.to_ascii_uppercase().as_bytes())
        else {
            return false;
        };
        self.keys.iter().any(|key| {
            let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(address.to_lowercase().as_bytes());
            mac.verify_truncated_left(&bytes).is_ok()
        })
    }

    /// The VERP address a message was delivered to, read from its own headers (see the
    /// module docs): a signed one that verifies, else the first one found.
    pub fn find(&self, mail: &Mail<'_>) -> Option<Decoded> {
        let mut first = None;
        let mut candidates = 0;
        for name in HEADERS {
            for value in mail.headers(name) {
                for a in super::lhost::text::addresses(&value) {
                    super::budget::check();
                    let Some(d) = self.decode(a) else { continue };
                    if d.signature == Signature::Valid {
                        return Some(d);
                    }
                    first.get_or_insert(d);
                    candidates += 1;
                    if candidates >= MAX_CANDIDATES {
                        return first;
                    }
                }
            }
        }
        first
    }
}

/// The tag of `address` under `key`: HMAC-SHA256 over the lowercased address, its first 5
/// bytes in base32 (RFC 4648), lowercase: 8 characters of `a`-`z`, `2`-`7`.
pub fn tag(key: &[u8], address: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(address.to_lowercase().as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut t = data_encoding::BASE32_NOPAD.encode(&digest[..TAG_BYTES]);
    t.make_ascii_lowercase();
    t
}

/// Reads keys as the config's `key_env` variable or `key_file` holds them: separated by
/// whitespace, commas or line breaks (lines starting with `#` are comments). The first signs,
/// every one verifies. Each key is used as the bytes of its text; at least
/// [`MIN_KEY_LEN`] of them. Errors never quote a key.
pub fn parse_keys(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let keys: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|k| !k.is_empty())
        .map(|k| k.as_bytes().to_vec())
        .collect();
    if keys.is_empty() {
        return Err("it holds no key".into());
    }
    if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_LEN) {
        return Err(key_too_short(short));
    }
    Ok(keys)
}

fn key_too_short(index: usize) -> String {
    format!(
        "key {} is shorter than {MIN_KEY_LEN} characters: use a random one, e.g. the output of `openssl rand -hex 32`",
        index + 1
    )
}

fn parse_delimiters(s: &str) -> Result<(char, char), String> {
    let chars: Vec<char> = s.chars().collect();
    let [d1, d2] = chars[..] else {
        return Err(format!(
            "delimiters must be two characters (the one before the recipient, the one before its domain), like \"+=\" or \"-=\", not {s:?}"
        ));
    };
    if d1 == d2 || !DELIMITER_CHARS.contains(d1) || !DELIMITER_CHARS.contains(d2) {
        return Err(format!(
            "delimiters {s:?}: two different characters out of {DELIMITER_CHARS}, like \"+=\" or \"-=\""
        ));
    }
    if d2 == '-' {
        return Err(format!(
            "delimiters {s:?}: the second one comes before the recipient's domain, and domains contain '-': use \"+=\" or \"-=\""
        ));
    }
    Ok((d1, d2))
}

/// `local@domain` of a plain address, lowercased; why not, otherwise.
fn split_address(address: &str) -> Result<(String, String), &'static str> {
    let a = address.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(a);
    if a.contains('"') {
        return Err("its local part is quoted; only unquoted (dot-atom) addresses can be");
    }
    if !a.is_ascii() {
        return Err("it is not ASCII; write the domain in its xn-- form");
    }
    let Some((local, domain)) = a.split_once('@') else {
        return Err("it has no @");
    };
    if domain.contains('@') {
        return Err("it has more than one @");
    }
    check_local(local)?;
    check_domain(domain)?;
    Ok((local.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

/// An RFC 5322 dot-atom: atext and single dots, not at either end.
fn check_local(local: &str) -> Result<(), &'static str> {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    if local.is_empty() {
        return Err("its local part is empty");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("its local part has a dot at an end or two in a row");
    }
    if !local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || SPECIALS.contains(c))
    {
        return Err("its local part has characters an unquoted address cannot hold");
    }
    Ok(())
}

/// A host name of at least two labels: letters, digits and inner hyphens.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| {
            l.is_empty()
                || l.len() > 63
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return Err("its domain is not a host name (a domain literal cannot be carried)");
    }
    Ok(())
}

/// `example.org+k3vq7d2m` → (`example.org`, the tag); a tail without one is all domain.
fn split_tag(tail: &str, d1: char) -> (&str, Option<&str>) {
    let n = tail.len();
    if n > TAG_LEN + 1 && tail.is_char_boundary(n - TAG_LEN - 1) {
        let (domain, rest) = tail.split_at(n - TAG_LEN - 1);
        if let Some(t) = rest.strip_prefix(d1)
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return (domain, Some(t));
        }
    }
    (tail, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"first-key-0123456789abcdef";
    const K2: &[u8] = b"second-key-0123456789abcdef";

    fn verp(keys: &[&[u8]], delimiters: &str) -> Verp {
        Verp::new(
            &[
                "bounces@mail.example.com".into(),
                "List-Bounces@lists.example.net".into(),
            ],
            delimiters,
            keys.iter().map(|k| k.to_vec()).collect(),
            false,
        )
        .unwrap()
    }

    #[test]
    fn unsigned_round_trip_in_postfix_and_qmail_style() {
        let v = verp(&[], "+=");
        let rp = v
            .encode("bounces@mail.example.com", "Carl@Example.org")
            .unwrap();
        assert_eq!(rp, "bounces+carl=example.org@mail.example.com");
        let d = v.decode(&rp).unwrap();
        assert_eq!(
            (d.address.as_str(), d.signature),
            ("carl@example.org", Signature::None)
        );
        // Mailman's list-bounces+user=domain@ form; the MTA may have changed the case.
        let d = v
            .decode("<LIST-BOUNCES+Ana.Lima=Example.COM.BR@Lists.Example.NET>")
            .unwrap();
        assert_eq!(d.address, "ana.lima@example.com.br");
        let q = verp(&[], "-=");
        let rp = q
            .encode("bounces@mail.example.com", "ana@sub-domain.example.org")
            .unwrap();
        assert_eq!(rp, "bounces-ana=sub-domain.example.org@mail.example.com");
        assert_eq!(q.decode(&rp).unwrap().address, "ana@sub-domain.example.org");
        // Not ours: another domain, another local part, no delimiter, no domain.
        for other in [
            "bounces+carl=example.org@mail.example.org",
            "news+carl=example.org@mail.example.com",
            "bounces@mail.example.com",
            "bounces+carl@mail.example.com",
            "bounces+carl=localhost@mail.example.com",
            "bounces+=example.org@mail.example.com",
        ] {
            assert_eq!(v.decode(other), None, "{other}");
        }
    }

    #[test]
    fn delimiters_in_the_recipient_local_part_round_trip() {
        for keys in [&[][..], &[K1][..]] {
            for delimiters in ["+=", "-="] {
                let v = verp(keys, delimiters);
                for address in [
                    "a+b@example.org",
                    "a=b@example.org",
                    "a=b+c=d@example.org",
                    "x-y-@ex-ample.org",
                    "tag+abcdefgh@example.org",
                    "o'neil.j@example.co.uk",
                ] {
                    let rp = v.encode("bounces@mail.example.com", address).unwrap();
                    let d = v.decode(&rp).unwrap_or_else(|| panic!("{rp}"));
                    assert_eq!(d.address, address, "{rp} ({delimiters})");
                    let expected = if keys.is_empty() {
                        Signature::None
                    } else {
                        Signature::Valid
                    };
                    assert_eq!(d.signature, expected, "{rp}");
                }
            }
        }
    }

    #[test]
    fn signed_tags_verify_rotate_and_fail_when_tampered() {
        let v = verp(&[K1], "+=");
        let rp = v
            .encode("bounces@mail.example.com", "carl@example.org")
            .unwrap();
        let t = tag(K1, "carl@example.org");
        assert_eq!(t.len(), TAG_LEN);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(rp, format!("bounces+carl=example.org+{t}@mail.example.com"));
        assert_eq!(v.decode(&rp).unwrap().signature, Signature::Valid);
        // A receiving MTA that uppercases (or lowercases) the local part changes nothing.
        assert_eq!(
            v.decode(&rp.to_uppercase()).unwrap().signature,
            Signature::Valid
        );
        // Rotation: signed with the old key, verified by a config listing the new one first.
        let rotated = verp(&[K2, K1], "+=");
        let d = rotated.decode(&rp).unwrap();
        assert_eq!(
            (d.address.as_str(), d.signature),
            ("carl@example.org", Signature::Valid)
        );
        assert!(
            rotated
                .encode("bounces@mail.example.com", "carl@example.org")
                .unwrap()
                .contains(&tag(K2, "carl@example.org"))
        );
        // Tampered: one character of the tag, or the tag moved to another address.
        let flipped: String = t
            .chars()
            .enumerate()
            .map(|(i, c)| match (i, c) {
                (0, 'a') => 'b',
                (0, _) => 'a',
                (_, c) => c,
            })
            .collect();
        let tampered = rp.replace(&t, &flipped);
        assert_eq!(v.decode(&tampered).unwrap().signature, Signature::Invalid);
        let moved = rp.replace("carl=", "dana=");
        let d = v.decode(&moved).unwrap();
        assert_eq!(
            (d.address.as_str(), d.signature),
            ("dana@example.org", Signature::Invalid)
        );
        // No tag at all, with a key configured; a key that is not configured.
        let unsigned = "bounces+carl=example.org@mail.example.com";
        assert_eq!(v.decode(unsigned).unwrap().signature, Signature::Missing);
        assert_eq!(
            verp(&[K2], "+=").decode(&rp).unwrap().signature,
            Signature::Invalid
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_with_the_reason() {
        let v = verp(&[K1], "+=");
        for (address, why) in [
            ("\"a b\"@example.org", "quoted"),
            ("\"x@y\"@example.org", "quoted"),
            ("josé@example.org", "ASCII"),
            ("carl@[192.0.2.1]", "host name"),
            ("carl@localhost", "host name"),
            ("carl", "no @"),
            ("a..b@example.org", "dot"),
            ("a b@example.org", "characters"),
        ] {
            let err = v.encode("bounces@mail.example.com", address).unwrap_err();
            assert!(err.contains(why), "{address}: {err}");
        }
        assert!(Verp::new(&[], "+", vec![], false).is_err());
        assert!(Verp::new(&[], "++", vec![], false).is_err());
        assert!(Verp::new(&[], "=-", vec![], false).is_err());
        assert!(Verp::new(&[], "a=", vec![], false).is_err());
        assert!(Verp::new(&[], "+=", vec![b"short".to_vec()], false).is_err());
        let err = Verp::new(&[], "+=", vec![], true).unwrap_err();
        assert!(err.contains("key_env"), "{err}");
        let err = Verp::new(&["not an address".into()], "+=", vec![], false).unwrap_err();
        assert!(err.contains("return_paths"), "{err}");
    }

    #[test]
    fn keys_are_read_from_text_without_echoing_them() {
        let keys = parse_keys("# rotated 2026-11\nnew-key-0123456789abcdef\nold-key-0123456789abcdef, third-key-0123456789abcd\n").unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], b"new-key-0123456789abcdef");
        let err = parse_keys("tiny-secret").unwrap_err();
        assert!(!err.contains("tiny"), "{err}");
        assert!(parse_keys("  \n# nothing\n").is_err());
    }

    #[test]
    fn fingerprints_change_with_every_setting_and_hide_the_keys() {
        let a = verp(&[K1], "+=");
        assert_eq!(a.fingerprint(), verp(&[K1], "+=").fingerprint());
        for other in [verp(&[K2], "+="), verp(&[K1, K2], "+="), verp(&[K1], "-=")] {
            assert_ne!(a.fingerprint(), other.fingerprint());
        }
        let text = format!("{a:?} {}", a.fingerprint());
        assert!(!text.contains("first-key"), "{text}");
    }
}

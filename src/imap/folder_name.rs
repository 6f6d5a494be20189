//! Folder names on the wire: IMAP's modified UTF-7 (RFC 3501 §5.1.3).
//!
//! Users write folder names as they see them (`Rückläufer`, `Processed/Rückläufer`); servers
//! expect them encoded: printable ASCII stands for itself (`&` becomes `&-`), every other run
//! of characters becomes `&`, the base64 of its UTF-16BE form with `,` for `/` and no padding,
//! then `-`. rebound keeps the human form everywhere (config, ledger, logs) and encodes only
//! when it names a folder to the server.
//!
//! Written here rather than taken from a crate: the one crate for it (`utf7-imap` 0.3.2, last
//! released in 2022) passes DEL through unencoded, panics on malformed input and pulls in regex,
//! encoding_rs and an old base64 for what is a few dozen lines.

use thiserror::Error;

/// The base64 alphabet of modified UTF-7: `,` instead of `/`.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// A name the server sent (or a user wrote) that is not valid modified UTF-7.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{name:?} is not a valid modified UTF-7 folder name: {why}")]
pub struct InvalidName {
    pub name: String,
    pub why: &'static str,
}

/// True for the characters that represent themselves (printable US-ASCII).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a folder name for the server.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            shift_out(&mut out, &mut run);
            match c {
                '&' => out.push_str("&-"),
                c => out.push(c),
            }
        } else {
            run.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    shift_out(&mut out, &mut run);
    out
}

/// Writes a pending run of UTF-16 units as `&base64-` and empties it.
fn shift_out(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |g, (i, &b)| g | u32::from(b) << (16 - 8 * i));
        // n bytes carry 8n bits: n + 1 characters of 6 bits, the last one zero-padded.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out.push('-');
    run.clear();
}

/// Decodes a folder name as the server spells it. Strict: anything RFC 3501 forbids (unfinished
/// or needlessly encoded runs, two runs back to back, bad UTF-16) is an error.
pub fn decode(wire: &str) -> Result<String, InvalidName> {
    let invalid = |why| InvalidName {
        name: wire.to_string(),
        why,
    };
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    let mut after_run = false;
    while let Some(amp) = rest.find('&') {
        let (direct, shifted) = (&rest[..amp], &rest[amp + 1..]);
        if !direct.chars().all(is_direct) {
            return Err(invalid("it contains characters that must be encoded"));
        }
        out.push_str(direct);
        let end = shifted
            .find('-')
            .ok_or_else(|| invalid("an encoded run does not end with '-'"))?;
        let base64 = &shifted[..end];
        if base64.is_empty() {
            out.push('&');
            after_run = false;
        } else {
            if after_run && direct.is_empty() {
                return Err(invalid("two encoded runs follow each other"));
            }
            out.push_str(&decode_run(base64).map_err(invalid)?);
            after_run = true;
        }
        rest = &shifted[end + 1..];
    }
    if !rest.chars().all(is_direct) {
        return Err(invalid("it contains characters that must be encoded"));
    }
    out.push_str(rest);
    Ok(out)
}

/// Decodes the base64 between `&` and `-` into the characters it stands for.
fn decode_run(base64: &str) -> Result<String, &'static str> {
    let mut bytes = Vec::with_capacity(base64.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for b in base64.bytes() {
        let value = ALPHABET
            .iter()
            .position(|&a| a == b)
            .ok_or("an encoded run holds a character outside the base64 alphabet")?;
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if count >= 6 || bits != 0 || bytes.len() % 2 != 0 {
        return Err("an encoded run does not end on a whole UTF-16 unit");
    }
    let units = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    let text = char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| "an encoded run holds an unpaired UTF-16 surrogate")?;
    if text.chars().any(is_direct) {
        return Err("an encoded run holds printable ASCII, which must stand for itself");
    }
    Ok(text)
}

/// True when a name as written in the config is already in modified UTF-7 with at least one
/// encoded run (`R&APw-ckl&AOQ-ufer`): encoding it again would name a different folder.
pub fn looks_encoded(name: &str) -> bool {
    decode(name).is_ok_and(|human| human != name.replace("&-", "&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3501 §5.1.3's example, and names as users write them.
    const PAIRS: &[(&str, &str)] = &[
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Rückläufer", "R&APw-ckl&AOQ-ufer"),
        ("Verarbeitet/Rückläufer", "Verarbeitet/R&APw-ckl&AOQ-ufer"),
        ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("AT&T", "AT&-T"),
        ("&", "&-"),
        ("INBOX", "INBOX"),
        ("", ""),
        // Outside the BMP: a surrogate pair in one run.
        ("📬", "&2D3c7A-"),
        // DEL is not printable: it is encoded.
        ("a\u{7f}b", "a&AH8-b"),
    ];

    #[test]
    fn encodes_and_decodes_the_examples() {
        for (human, wire) in PAIRS {
            assert_eq!(encode(human), *wire, "encoding {human:?}");
            assert_eq!(decode(wire).as_deref(), Ok(*human), "decoding {wire:?}");
        }
    }

    #[test]
    fn round_trips_every_run_length() {
        // 1 to 7 UTF-16 units exercise every base64 padding case (2, 4 and 6 bytes per group).
        for n in 1..=7 {
            let name = format!("x{}y/{}", "ä".repeat(n), "€".repeat(n));
            assert_eq!(decode(&encode(&name)).unwrap(), name);
        }
    }

    #[test]
    fn rejects_what_rfc_3501_forbids() {
        for bad in [
            "&Jjo!",              // no terminating '-'
            "&U,BTFw-&ZeVnLIqe-", // two runs back to back must be one
            "&AGE-",              // 'a' must not be encoded
            "&2D0-",              // an unpaired surrogate
            "&AO-",               // leftover bits that are not zero
            "&AP-",               // not a whole UTF-16 unit
            "&A/8-",              // '/' is not in the alphabet (',' is)
            "Rückläufer",         // raw 8-bit text on the wire
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn recognises_names_written_already_encoded() {
        assert!(looks_encoded("R&APw-ckl&AOQ-ufer"));
        assert!(looks_encoded("~peter/mail/&U,BTFw-/&ZeVnLIqe-"));
        for plain in ["INBOX", "AT&-T", "AT&T", "Rückläufer", "a&b-c", "Q&A"] {
            assert!(!looks_encoded(plain), "{plain:?}");
        }
    }
}

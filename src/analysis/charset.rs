//! Text in whatever character set a mail system wrote it, decoded to UTF-8 before any rule
//! reads it and before it is stored.
//!
//! mail-parser decodes text parts in their declared charset (with `full_encoding`: ISO-2022-JP,
//! Shift_JIS, EUC-KR, GB2312/GBK, Big5, KOI8-R and the single-byte sets). What it cannot know
//! is what a part does not declare, and bounces often do not:
//! - a `message/delivery-status` part is handed back as bytes; Japanese MTAs write the
//!   Diagnostic-Code of a local refusal in ISO-2022-JP, Russian ones in KOI8-R;
//! - Japanese notices declared `us-ascii` (or nothing) carry ISO-2022-JP: 7-bit bytes with
//!   `ESC $ B` shifts, which pass through as escape characters;
//! - 8-bit text with no charset at all (old Exim and qmail templates translated by hosting
//!   providers: KOI8-R, windows-1251, ISO-8859-1).
//!
//! So: a declared charset is believed; ISO-2022-JP escapes are decoded as such; valid UTF-8
//! stays; anything else is what `chardetng` (Firefox's detector) guesses it is.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;

/// Decodes bytes to text: in the declared charset when it is known (and fits: a `us-ascii`
/// part holding ISO-2022-JP escapes is ISO-2022-JP), else by what the bytes are.
pub fn decode(bytes: &[u8], declared: Option<&str>) -> String {
    let declared = declared
        .map(str::trim)
        .filter(|c| !c.is_empty() && !is_ascii_label(c));
    if let Some(name) = declared
        && let Some(decoder) = charset_decoder(name.as_bytes())
    {
        return decoder(bytes);
    }
    if has_iso2022jp_escapes(bytes) {
        return encoding_rs::ISO_2022_JP.decode(bytes).0.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => guess(bytes),
    }
}

/// Text that mail-parser decoded but that still holds ISO-2022-JP escape sequences (a part
/// declared `us-ascii`, or none): the same text, decoded.
pub fn repair(text: Cow<'_, str>) -> Cow<'_, str> {
    if has_iso2022jp_escapes(text.as_bytes()) {
        Cow::Owned(
            encoding_rs::ISO_2022_JP
                .decode(text.as_bytes())
                .0
                .into_owned(),
        )
    } else {
        text
    }
}

/// The charset that best explains bytes which are not UTF-8 (Firefox's detector).
fn guess(bytes: &[u8]) -> String {
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let encoding = detector.guess(None, true);
    encoding.decode(bytes).0.into_owned()
}

/// `ESC $ B`, `ESC $ @` (JIS X 0208) or `ESC ( J` / `ESC ( B` (back to ASCII).
pub fn has_iso2022jp_escapes(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| {
        w[0] == 0x1b
            && ((w[1] == b'$' && matches!(w[2], b'B' | b'@')) || (w[1] == b'(' && w[2] == b'J'))
    })
}

/// Labels that mean plain ASCII: no reason to believe them over what the bytes show.
fn is_ascii_label(charset: &str) -> bool {
    ["us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968"]
        .iter()
        .any(|a| charset.eq_ignore_ascii_case(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_escaped_and_undeclared_bytes() {
        let jis = encoding_rs::ISO_2022_JP
            .encode("宛先のユーザーが存在しません")
            .0;
        assert_eq!(
            decode(&jis, Some("iso-2022-jp")),
            "宛先のユーザーが存在しません"
        );
        assert_eq!(
            decode(&jis, Some("us-ascii")),
            "宛先のユーザーが存在しません"
        );
        assert_eq!(decode(&jis, None), "宛先のユーザーが存在しません");
        let koi8 = encoding_rs::KOI8_R
            .encode("Сообщение не может быть доставлено: пользователь не существует")
            .0;
        assert_eq!(
            decode(&koi8, None),
            "Сообщение не может быть доставлено: пользователь не существует"
        );
        assert_eq!(decode("plain ascii".as_bytes(), None), "plain ascii");
        let repaired = repair(Cow::Owned(String::from_utf8(jis.to_vec()).unwrap()));
        assert_eq!(repaired, "宛先のユーザーが存在しません");
    }
}

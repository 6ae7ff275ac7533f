//! HL7 v2 "ER7" (pipe-delimited) messages: reading with the separators the message declares,
//! unescaping, and writing with escaping.
//!
//! Reading is lenient where senders commonly differ (segments ended by CR, LF or CRLF, trailing
//! empty fields) and strict where a mistake would mis-file data (an MSH that does not declare
//! its separators, a segment id that is not three upper-case letters or digits, a message with
//! no MSH first).

use crate::Hl7Error;

/// The five separators an HL7 v2 message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Separators {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

/// One segment: its id and its fields as written (still escaped). `fields[n]` is field `n`
/// in HL7's numbering for every segment (for MSH, `fields[1]` is the field separator itself
/// and `fields[2]` the encoding characters, as the standard counts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    pub fields: Vec<String>,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub sep: Separators,
    pub segments: Vec<Segment>,
}

/// The largest message accepted (also MLLP's frame limit): a day of ADT for a unit is
/// kilobytes; this only stops a hostile or broken sender from filling memory.
pub const MAX_MESSAGE: usize = 1 << 20;

impl Message {
    pub fn parse(text: &str) -> Result<Self, Hl7Error> {
        if text.len() > MAX_MESSAGE {
            return Err(Hl7Error::TooLarge(text.len()));
        }
        let text = text.trim_start_matches(['\r', '\n']);
        if !text.starts_with("MSH") {
            return Err(Hl7Error::Malformed(
                "the message does not start with MSH".into(),
            ));
        }
        let mut chars = text[3..].chars();
        let field = chars
            .next()
            .ok_or_else(|| Hl7Error::Malformed("MSH ends before its separators".into()))?;
        let enc: Vec<char> = chars.take_while(|c| *c != field).collect();
        if enc.len() < 4 || enc.len() > 5 {
            return Err(Hl7Error::Malformed(format!(
                "MSH-2 declares {} encoding characters; 4 are needed",
                enc.len()
            )));
        }
        let sep = Separators {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: enc[2],
            subcomponent: enc[3],
        };
        let all = [field, enc[0], enc[1], enc[2], enc[3]];
        if all
            .iter()
            .enumerate()
            .any(|(i, c)| c.is_alphanumeric() || c.is_control() || all[..i].contains(c))
        {
            return Err(Hl7Error::Malformed(
                "MSH-1/MSH-2 separators must be five distinct punctuation characters".into(),
            ));
        }
        let mut segments = Vec::new();
        for (n, line) in text.split(['\r', '\n']).enumerate() {
            if line.is_empty() {
                continue;
            }
            let mut fields: Vec<String> = line.split(field).map(str::to_string).collect();
            let id = fields[0].clone();
            if id.len() != 3
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(Hl7Error::Malformed(format!(
                    "segment {} has id {:?}; ids are three upper-case letters or digits",
                    n + 1,
                    id.chars().take(12).collect::<String>()
                )));
            }
            if id == "MSH" {
                // "MSH|^~\&|..." splits as ["MSH", "^~\&", ...]: insert MSH-1 so that
                // fields[n] is MSH-n.
                fields.insert(1, field.to_string());
            }
            segments.push(Segment { id, fields });
        }
        if segments.first().map(|s| s.id.as_str()) != Some("MSH") {
            return Err(Hl7Error::Malformed("the first segment is not MSH".into()));
        }
        Ok(Self { sep, segments })
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Field `n` of the first `seg`, as written (escaped), or "".
    pub fn raw(&self, seg: &str, n: usize) -> &str {
        self.segment(seg)
            .and_then(|s| s.fields.get(n))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Component `c` (1-based) of the first repetition of field `n` of the first `seg`,
    /// unescaped; "" when absent. Component 1 of a field without components is the field.
    pub fn get(&self, seg: &str, n: usize, c: usize) -> String {
        let raw = self.raw(seg, n);
        let rep = raw.split(self.sep.repetition).next().unwrap_or("");
        let comp = rep
            .split(self.sep.component)
            .nth(c.saturating_sub(1))
            .unwrap_or("");
        // Sub-components are joined back as written: the station reads none separately.
        self.unescape(comp)
    }

    /// Undoes HL7 escapes: \F\ \S\ \T\ \R\ \E\, and \Xhh..\ (bytes, read as UTF-8). Other
    /// escapes (formatting, character sets) are dropped, as a display would.
    pub fn unescape(&self, s: &str) -> String {
        let e = self.sep.escape;
        if !s.contains(e) {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut it = s.split(e);
        if let Some(first) = it.next() {
            out.push_str(first);
        }
        let mut inside = true;
        for part in it {
            if inside {
                match part {
                    "F" => out.push(self.sep.field),
                    "S" => out.push(self.sep.component),
                    "T" => out.push(self.sep.subcomponent),
                    "R" => out.push(self.sep.repetition),
                    "E" => out.push(e),
                    x if x.starts_with('X') => {
                        let hex = &x[1..];
                        let bytes: Vec<u8> = (0..hex.len() / 2)
                            .filter_map(|i| hex.get(2 * i..2 * i + 2))
                            .filter_map(|h| u8::from_str_radix(h, 16).ok())
                            .collect();
                        out.push_str(&String::from_utf8_lossy(&bytes));
                    }
                    _ => {}
                }
            } else {
                out.push_str(part);
            }
            inside = !inside;
        }
        out
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> String {
        self.get("MSH", 10, 1)
    }

    /// MSH-9 as (message code, trigger event), e.g. ("ADT", "A01").
    pub fn kind(&self) -> (String, String) {
        (self.get("MSH", 9, 1), self.get("MSH", 9, 2))
    }
}

/// Escapes text for a field or component written with the default separators; control
/// characters (CR, LF, ...) become \Xhh\ so they cannot end a segment.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                out.push_str("\\X");
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("{b:02X}"));
                }
                out.push('\\');
            }
            c => out.push(c),
        }
    }
    out
}

/// Components joined with `^`, each escaped.
pub fn comps(parts: &[&str]) -> String {
    let mut s: Vec<String> = parts.iter().map(|p| esc(p)).collect();
    while s.last().is_some_and(String::is_empty) {
        s.pop();
    }
    s.join("^")
}

/// Writes segments (fields already escaped) with the default separators; segments end with
/// CR as the standard asks. `MSH` fields start at MSH-3 (MSH-1 and MSH-2 are written here).
pub fn write(segments: &[(&str, Vec<String>)]) -> String {
    let mut out = String::new();
    for (id, fields) in segments {
        out.push_str(id);
        if *id == "MSH" {
            out.push_str("|^~\\&");
        }
        let mut fields = fields.clone();
        while fields.last().is_some_and(String::is_empty) {
            fields.pop();
        }
        for f in fields {
            out.push('|');
            out.push_str(&f);
        }
        out.push('\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str =
        "MSH|^~\\&|EPIC|CITY|WARDWATCH|4W|20261204101500||ADT^A01^ADT_A01|MSG0001|P|2.5\r\
        EVN|A01|20261204101500\r\
        PID|1||123456^^^CITYHOSP^MR~999^^^SSA^SS||DOE^JANE^Q||19840229|F\r\
        PV1|1|I|4W^401^A||||||||||||||||V-77\r";

    #[test]
    fn reads_fields_components_and_repetitions() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.kind(), ("ADT".into(), "A01".into()));
        assert_eq!(m.control_id(), "MSG0001");
        assert_eq!(m.get("MSH", 1, 1), "|");
        assert_eq!(m.get("MSH", 12, 1), "2.5");
        assert_eq!(m.get("PID", 3, 1), "123456");
        assert_eq!(m.get("PID", 3, 4), "CITYHOSP");
        assert_eq!(m.get("PID", 5, 2), "JANE");
        assert_eq!(m.get("PV1", 3, 3), "A");
        assert_eq!(m.get("PV1", 19, 1), "V-77");
        assert_eq!(m.get("PV1", 40, 1), "", "absent fields read as empty");
        assert_eq!(m.get("ZZZ", 1, 1), "");
    }

    #[test]
    fn line_endings_vary_and_escapes_are_undone() {
        let m =
            Message::parse("MSH|^~\\&|A|B\nPID|1||1||O\\S\\BRIEN\\T\\CO^ANN\\X0D0A\\X\\E\\\r\n")
                .unwrap();
        assert_eq!(m.get("PID", 5, 1), "O^BRIEN&CO");
        assert_eq!(m.get("PID", 5, 2), "ANN\r\nX\\");
    }

    #[test]
    fn other_separators_are_honoured() {
        let m = Message::parse("MSH#*@!$#A\rPID#1##77*x@88").unwrap();
        assert_eq!(m.sep.component, '*');
        assert_eq!(m.get("PID", 3, 1), "77");
        assert_eq!(m.get("PID", 3, 2), "x");
    }

    #[test]
    fn malformed_messages_are_named() {
        for (text, want) in [
            ("PID|1", "does not start with MSH"),
            ("MSH", "before its separators"),
            ("MSH|^~|", "2 encoding characters"),
            ("MSH|^^\\&|", "five distinct"),
            ("MSH|^~\\&|A\rpid|1", "segment 2 has id \"pid\""),
            ("MSH|^~\\&|A\rPIDX|1", "segment 2 has id \"PIDX\""),
        ] {
            let e = Message::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let big = format!("MSH|^~\\&|{}", "x".repeat(MAX_MESSAGE));
        assert!(matches!(Message::parse(&big), Err(Hl7Error::TooLarge(_))));
    }

    #[test]
    fn written_messages_read_back() {
        let name = "O'Brien|Smith^Jr\\&~\r";
        let text = write(&[
            ("MSH", vec![esc("WW"), String::new(), String::new()]),
            (
                "PID",
                vec![
                    "1".into(),
                    String::new(),
                    comps(&[name, "Ann"]),
                    String::new(),
                ],
            ),
        ]);
        assert_eq!(
            text,
            "MSH|^~\\&|WW\rPID|1||O'Brien\\F\\Smith\\S\\Jr\\E\\\\T\\\\R\\\\X0D\\^Ann\r"
        );
        let m = Message::parse(&text).unwrap();
        assert_eq!(m.get("PID", 3, 1), name);
        assert_eq!(m.get("PID", 3, 2), "Ann");
    }
}

//! Seeded mutations of small valid inputs: truncations, byte flips and splices anywhere, and
//! edits of the fields each format's header holds (the `.npy` dict and its framing, the
//! safetensors JSON and its length, the zip records of an `.npz`), including multi-byte UTF-8
//! where a parser might slice text.

/// SplitMix64 (Steele, Lea & Flood 2014): a fixed, dependency-free stream, so a case number
/// reproduces the same input on every machine and toolchain.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Npy,
    Npz,
    Safetensors,
}

/// Text a parser might slice in the middle of: 2-, 3- and 4-byte characters, a combining
/// mark, and bytes that are not UTF-8 at all.
const MULTIBYTE: &[&[u8]] = &[
    "é".as_bytes(),
    "中".as_bytes(),
    "😀".as_bytes(),
    "\u{301}".as_bytes(),
    "\u{FFFD}".as_bytes(),
    b"\x80",
    b"\xc3",
    b"\xff\xfe",
];

/// Applies one (60%), two (30%) or three mutations to `seed`; returns the new bytes and what
/// was done. Most single mutations already make an input unreadable, so stacking more would
/// leave few inputs that reach the data reads.
pub fn mutate(kind: Kind, seed: &[u8], rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut b = seed.to_vec();
    let mut log = Vec::new();
    let n = match rng.below(10) {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    for _ in 0..n {
        log.push(match rng.below(10) {
            0 | 1 => truncate(&mut b, rng),
            2 | 3 => flip(&mut b, rng),
            4 => splice(&mut b, rng),
            _ => match kind {
                Kind::Npy => npy_edit(&mut b, rng),
                Kind::Npz => zip_edit(&mut b, rng),
                Kind::Safetensors => st_edit(&mut b, rng),
            },
        });
    }
    (b, log)
}

/// Headers sit in the first bytes of `.npy` and safetensors files; half the damage goes there.
fn position(b: &[u8], rng: &mut Rng) -> usize {
    if rng.chance(50) {
        rng.below(b.len().min(192))
    } else {
        rng.below(b.len())
    }
}

fn truncate(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = position(b, rng);
    b.truncate(at);
    format!("truncate to {at}")
}

fn flip(b: &mut [u8], rng: &mut Rng) -> String {
    if b.is_empty() {
        return "flip (empty)".into();
    }
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let at = position(b, rng);
        let old = b[at];
        b[at] = if rng.chance(50) {
            old ^ (1 << rng.below(8))
        } else {
            rng.next_u64() as u8
        };
        done.push(format!("{at}:{old:#04x}->{:#04x}", b[at]));
    }
    format!("flip {}", done.join(","))
}

fn splice(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = position(b, rng).min(b.len());
    let n = 1 + rng.below(16);
    match rng.below(3) {
        0 => {
            let end = (at + n).min(b.len());
            b.drain(at..end);
            format!("delete {at}..{end}")
        }
        1 => {
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(at..at, bytes);
            format!("insert {n} random bytes at {at}")
        }
        _ => {
            let chunk = *rng.pick(MULTIBYTE);
            b.splice(at..at, chunk.iter().copied());
            format!("insert {chunk:x?} at {at}")
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | x as u64)
}

/// A value to put in a `width`-byte length, offset or count field that held `old`.
fn field_value(old: u64, width: usize, rng: &mut Rng) -> u64 {
    let max = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let v = match rng.below(9) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => old.wrapping_add(1),
        4 => old.wrapping_sub(1),
        5 => old.wrapping_mul(2),
        6 => 1u64 << 31,
        7 => 1u64 << 62,
        _ => rng.next_u64(),
    };
    v & max
}

fn set_le(b: &mut [u8], at: usize, width: usize, v: u64) {
    for (i, x) in b[at..at + width].iter_mut().enumerate() {
        *x = (v >> (8 * i)) as u8;
    }
}

/// Replaces the value after `'key':` in a header dict, up to and including `close`.
fn replace_value(text: &mut Vec<u8>, key: &str, close: u8, value: &[u8]) -> bool {
    let Some(k) = find(text, format!("'{key}':").as_bytes()) else {
        return false;
    };
    let start = k + key.len() + 3;
    let from = start + text[start..].iter().take_while(|&&c| c == b' ').count();
    let skip = usize::from(close == b'\'');
    let Some(len) = text
        .get(from + skip..)
        .and_then(|t| t.iter().position(|&c| c == close))
    else {
        return false;
    };
    text.splice(from..from + skip + len + 1, value.iter().copied());
    true
}

const DIMS: &[&str] = &[
    "0",
    "1",
    "3",
    "8",
    "24",
    "2147483648",
    "4294967296",
    "4611686018427387904",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "-1",
    "3.0",
    "'8'",
    "True",
    "None",
];

const DESCRS: &[&str] = &[
    "'<f4'",
    "'>f8'",
    "'|f4'",
    "'=f8'",
    "'<f2'",
    "'<e'",
    "'<d'",
    "'>i4'",
    "'<c8'",
    "'|b1'",
    "'<U4'",
    "'|O'",
    "'é4'",
    "'<fé'",
    "'中f4'",
    "''",
    "'<'",
    "[('a', '<f4')]",
    "3",
    "b'<f4'",
];

fn npy_edit(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    if b.len() < 12 || !b.starts_with(b"\x93NUMPY") {
        return flip(b, rng);
    }
    let v1 = b[6] == 1;
    let (hstart, width) = if v1 { (10, 2) } else { (12, 4) };
    match rng.below(8) {
        0 => {
            let old = le(&b[8..8 + width]);
            let v = field_value(old, width, rng);
            set_le(b, 8, width, v);
            return format!("header length {old} -> {v}");
        }
        1 => {
            let v = *rng.pick(&[0u8, 1, 2, 3, 4, 255]);
            b[6] = v;
            return format!("version -> {v}");
        }
        _ => {}
    }
    let hlen = le(&b[8..8 + width]) as usize;
    let hend = (hstart + hlen).min(b.len());
    let mut text = b[hstart..hend].to_vec();
    let what = match rng.below(6) {
        0 => {
            let dims: Vec<&str> = (0..rng.below(5)).map(|_| *rng.pick(DIMS)).collect();
            let tuple = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            replace_value(&mut text, "shape", b')', tuple.as_bytes());
            format!("shape -> {tuple}")
        }
        1 => {
            let d = *rng.pick(DESCRS);
            replace_value(&mut text, "descr", b'\'', d.as_bytes());
            format!("descr -> {d}")
        }
        2 => {
            let f = *rng.pick(&["True", "False", "1", "'x'", "Tru"]);
            replace_value(&mut text, "fortran_order", b',', format!("{f},").as_bytes());
            format!("fortran_order -> {f}")
        }
        3 => {
            let at = rng.below(text.len() + 1);
            let c = *rng.pick(MULTIBYTE);
            text.splice(at..at, c.iter().copied());
            format!("header text: insert {c:x?} at {at}")
        }
        4 => {
            let key = *rng.pick(&["descr", "fortran_order", "shape"]);
            let new = *rng.pick(&["desc", "shapes", "'", "", "shape': (8,), 'shape"]);
            if let Some(k) = find(&text, key.as_bytes()) {
                text.splice(k..k + key.len(), new.bytes());
            }
            format!("key {key} -> {new}")
        }
        _ => {
            let at = rng.below(text.len() + 1);
            let end = (at + 1 + rng.below(8)).min(text.len());
            text.drain(at..end);
            format!("header text: delete {at}..{end}")
        }
    };
    // Usually the length field follows the edit, so the parser sees it; sometimes it lies.
    let keep_len = rng.chance(20);
    let new_len = if keep_len { hlen } else { text.len() };
    let mut out = b[..hstart].to_vec();
    set_le(&mut out, 8, width, new_len as u64);
    out.extend_from_slice(&text);
    out.extend_from_slice(&b[hend..]);
    *b = out;
    format!("{what}{}", if keep_len { " (length kept)" } else { "" })
}

const ST_DTYPES: &[&str] = &[
    "F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X", "é", "",
];

fn json_number(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(9) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(8),
        3 => json!(1u64 << 32),
        4 => json!(1u64 << 62),
        5 => json!(u64::MAX),
        6 => json!(-1),
        7 => json!(3.5),
        _ => json!("8"),
    }
}

fn st_edit(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    use serde_json::{json, Value};
    if b.len() < 8 {
        return flip(b, rng);
    }
    let n = le(&b[..8]);
    if rng.chance(15) {
        let v = field_value(n, 8, rng);
        set_le(b, 0, 8, v);
        return format!("header length {n} -> {v}");
    }
    let Some(end) = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&e| e <= b.len())
    else {
        return flip(b, rng);
    };
    let mut text = b[8..end].to_vec();
    let what = match serde_json::from_slice::<serde_json::Map<String, Value>>(&text) {
        Ok(mut map) if rng.chance(80) => {
            let names: Vec<String> = map
                .keys()
                .filter(|k| *k != "__metadata__")
                .cloned()
                .collect();
            let name = rng.pick(&names).clone();
            let entry = map.get_mut(&name).unwrap();
            let what = match rng.below(7) {
                0 => {
                    let shape: Vec<Value> = (0..rng.below(5)).map(|_| json_number(rng)).collect();
                    let s = format!("shape -> {shape:?}");
                    entry["shape"] = Value::Array(shape);
                    s
                }
                1 => {
                    let i = rng.below(2);
                    let v = json_number(rng);
                    let s = format!("shape[{i}] -> {v}");
                    if let Some(x) = entry["shape"].get_mut(i) {
                        *x = v;
                    }
                    s
                }
                2 => {
                    let d = *rng.pick(ST_DTYPES);
                    entry["dtype"] = json!(d);
                    format!("dtype -> {d}")
                }
                3 => {
                    let (a, z) = (json_number(rng), json_number(rng));
                    let s = format!("data_offsets -> [{a}, {z}]");
                    entry["data_offsets"] = json!([a, z]);
                    s
                }
                4 => {
                    let field = *rng.pick(&["dtype", "shape", "data_offsets"]);
                    entry.as_object_mut().map(|o| o.remove(field));
                    format!("remove {field}")
                }
                5 => {
                    let new = *rng.pick(&["", "é", "w*[", "中/😀", "__metadata__"]);
                    let v = map.remove(&name).unwrap();
                    map.insert(new.into(), v);
                    format!("rename {name} -> {new}")
                }
                _ => {
                    map.insert("__metadata__".into(), json!({"é": "中😀", "format": "pt"}));
                    "add __metadata__".into()
                }
            };
            text = serde_json::to_vec(&map).unwrap();
            what
        }
        _ => {
            let at = rng.below(text.len() + 1);
            let c = *rng.pick(MULTIBYTE);
            text.splice(at..at, c.iter().copied());
            format!("header text: insert {c:x?} at {at}")
        }
    };
    let keep_len = rng.chance(20);
    let new_len = if keep_len { n } else { text.len() as u64 };
    let mut out = new_len.to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&b[end..]);
    *b = out;
    format!("{what}{}", if keep_len { " (length kept)" } else { "" })
}

/// A record's signature, then the fields a reader trusts for sizes, offsets and counts, as
/// (offset, width).
type ZipRecord = (&'static [u8], &'static [(usize, usize)]);

/// Zip records gradtail's reader walks (PKWARE APPNOTE 4.3).
const ZIP_RECORDS: &[ZipRecord] = &[
    // local file header: method, compressed and uncompressed size, name and extra lengths
    (b"PK\x03\x04", &[(8, 2), (18, 4), (22, 4), (26, 2), (28, 2)]),
    // central directory header: method, sizes, name/extra/comment lengths, local offset
    (
        b"PK\x01\x02",
        &[
            (10, 2),
            (20, 4),
            (24, 4),
            (28, 2),
            (30, 2),
            (32, 2),
            (42, 4),
        ],
    ),
    // end of central directory: entry counts, directory size and offset, comment length
    (b"PK\x05\x06", &[(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]),
    // zip64 end of central directory: entry counts, directory size and offset
    (b"PK\x06\x06", &[(24, 8), (32, 8), (40, 8), (48, 8)]),
    // zip64 locator: offset of the zip64 end record
    (b"PK\x06\x07", &[(8, 8)]),
];

fn zip_edit(b: &mut [u8], rng: &mut Rng) -> String {
    if rng.chance(30) {
        // Damage a member's `.npy` header in place (same length, so the zip stays valid).
        let starts: Vec<usize> = (0..b.len())
            .filter(|&i| b[i..].starts_with(b"{'descr'"))
            .collect();
        if let Some(&s) = starts.get(rng.below(starts.len())) {
            let c: &[u8] = rng.pick::<&[u8]>(&[
                "é".as_bytes(),
                "中".as_bytes(),
                b"9",
                b"0",
                b"'",
                b")",
                b"99999999999999999999",
            ]);
            let at = (s + rng.below(110)).min(b.len());
            let end = (at + c.len()).min(b.len());
            b[at..end].copy_from_slice(&c[..end - at]);
            return format!("member header: write {c:x?} at {at}");
        }
    }
    let mut fields = Vec::new();
    for (sig, offs) in ZIP_RECORDS {
        for at in (0..b.len()).filter(|&i| b[i..].starts_with(sig)) {
            for &(o, w) in *offs {
                if at + o + w <= b.len() {
                    fields.push((at + o, w));
                }
            }
        }
    }
    if fields.is_empty() {
        return flip(b, rng);
    }
    let (at, w) = *rng.pick(&fields);
    let old = le(&b[at..at + w]);
    let v = field_value(old, w, rng);
    set_le(b, at, w, v);
    format!("zip field at {at} ({w} bytes) {old} -> {v}")
}

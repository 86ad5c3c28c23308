//! `.npy` files of little-endian f32 in C order: the format of the goldens (`golden/fixtures/*.npy`) and of the
//! intermediates the CPU reference can dump. Written by hand because it is this small: the maintained crates
//! (`npyz`, `ndarray-npy`) bring `ndarray` or a generic dtype layer the harness has no other use for, and only
//! `<f4` C-order arrays are ever read or written here; anything else is refused with a message.

use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An f32 array: `shape` (C order, last axis fastest) and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads an `.npy` file holding `<f4` data in C order (format versions 1.0, 2.0 and 3.0).
pub fn read_f32(path: &Path) -> Result<NpyF32, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_f32(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_f32(bytes: &[u8]) -> Result<NpyF32, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file".into());
    }
    // Version 1.x has a u16 header length; 2.x and 3.x a u32.
    let (header_start, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let data_start = header_start + header_len;
    let header = std::str::from_utf8(bytes.get(header_start..data_start).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(format!("only little-endian f32 ('<f4') is supported; header {header:?}"));
    }
    if !compact.contains("'fortran_order':False") {
        return Err("only C-order arrays are supported".into());
    }
    let shape_text = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| format!("no shape in header {header:?}"))?;
    let shape = shape_text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry `{s}`")))
        .collect::<Result<Vec<_>, _>>()?;
    let elems: usize = shape.iter().product();
    let body = &bytes[data_start..];
    if body.len() != elems * 4 {
        return Err(format!("shape {shape:?} needs {} data bytes, the file has {}", elems * 4, body.len()));
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Ok(NpyF32 { shape, data })
}

/// Writes `data` as a C-order `<f4` array of `shape` (format version 1.0).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), String> {
    std::fs::write(path, encode_f32(shape, data)?).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, String> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(format!("shape {shape:?} does not hold {} values", data.len()));
    }
    let dims: String = shape.iter().map(|d| format!("{d},")).collect();
    // A 1-tuple needs its trailing comma; longer ones may keep it (numpy accepts both).
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // The header ends in '\n' and the data starts on a 64-byte boundary, as numpy writes it.
    while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let path = std::env::temp_dir().join(format!("ferrogem-npy-{}.npy", std::process::id()));
        for shape in [vec![5], vec![3, 4], vec![0, 7]] {
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.5 - 1.0).collect();
            write_f32(&path, &shape, &data).unwrap();
            assert_eq!(read_f32(&path).unwrap(), NpyF32 { shape, data });
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn npy_refuses_other_dtypes() {
        let mut bytes = encode_f32(&[2], &[1.0, 2.0]).unwrap();
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 2] = b'8';
        assert!(parse_f32(&bytes).unwrap_err().contains("'<f4'"));
    }
}

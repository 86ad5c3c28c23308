//! Model bytes that live outside wasm memory.

use ferrogem::source::{ByteSource, SourceError};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// A byte source behind a synchronous JS function `(offset: number, length: number) => Uint8Array`. In a worker that
/// is an OPFS `FileSystemSyncAccessHandle.read` or a `FileReaderSync` slice of a `File`: the engine asks for the
/// header, then one tensor at a time while uploading, then PLE rows per chunk, so wasm memory holds at most one
/// tensor of the file at once.
#[wasm_bindgen]
pub struct JsSource {
    name: String,
    len_bytes: u64,
    read: js_sys::Function,
}

#[wasm_bindgen]
impl JsSource {
    /// `len_bytes` is a JS number: exact up to 2⁵³ bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(name: String, len_bytes: f64, read: js_sys::Function) -> Result<JsSource, JsError> {
        if !(len_bytes >= 0.0 && len_bytes <= (1u64 << 53) as f64 && len_bytes.fract() == 0.0) {
            return Err(JsError::new(&format!("{name}: length {len_bytes} is not a whole number of bytes")));
        }
        Ok(JsSource { name, len_bytes: len_bytes as u64, read })
    }

    /// A source over bytes the page already holds in JS memory (a fetched `ArrayBuffer`, a test's fixture).
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(name: String, bytes: js_sys::Uint8Array) -> JsSource {
        let subarray =
            js_sys::Function::new_with_args("offset, length", "return this.subarray(offset, offset + length)");
        let len_bytes = bytes.length() as u64;
        JsSource { name, len_bytes, read: subarray.bind0(&bytes) }
    }
}

impl JsSource {
    /// What the page called it (a file name or URL), for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl ByteSource for JsSource {
    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let len_bytes = buf.len() as u64;
        if offset.checked_add(len_bytes).is_none_or(|end| end > self.len_bytes) {
            return Err(SourceError::OutOfRange { offset, len_bytes, source_len_bytes: self.len_bytes });
        }
        let fail = |message: String| SourceError::Read { source_name: self.name.clone(), offset, len_bytes, message };
        let got = self
            .read
            .call2(&JsValue::NULL, &JsValue::from(offset as f64), &JsValue::from(len_bytes as f64))
            .map_err(|e| fail(js_message(&e)))?;
        let bytes =
            got.dyn_into::<js_sys::Uint8Array>().map_err(|_| fail("the read did not return a Uint8Array".into()))?;
        if bytes.length() as u64 != len_bytes {
            return Err(fail(format!("the read returned {} bytes", bytes.length())));
        }
        bytes.copy_to(buf);
        Ok(())
    }
}

/// The message of a thrown JS value (an `Error`'s, or the value as a string).
fn js_message(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}

//! Typed metadata accessors. Each fails with an error naming the key: missing, of the wrong type, or holding a
//! value that does not fit. Integer accessors accept every integer width whose value fits, because llama.cpp
//! and Ollama write the same key with different widths.

use super::value::{Array, Value};
use super::{GgufError, GgufFile};

impl GgufFile {
    /// `general.architecture`, e.g. `gemma4`: the prefix of the model's own keys.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let value = self.require(key)?;
        let integer = value.as_integer().ok_or_else(|| wrong_type(key, "an integer", value))?;
        integer_to_u32(key, integer)
    }

    /// An f32, or an f64 narrowed to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self.require(key)? {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            ref other => Err(wrong_type(key, "a float", other)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match *self.require(key)? {
            Value::Bool(x) => Ok(x),
            ref other => Err(wrong_type(key, "a bool", other)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(key, "a string", other)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(array) => Ok(array),
            other => Err(wrong_type(key, "an array", other)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            Value::Array(Array::String(strings)) => Ok(strings),
            other => Err(wrong_type(key, "an array of string", other)),
        }
    }

    pub fn get_bool_array(&self, key: &str) -> Result<&[bool], GgufError> {
        match self.require(key)? {
            Value::Array(Array::Bool(bools)) => Ok(bools),
            other => Err(wrong_type(key, "an array of bool", other)),
        }
    }

    /// One u32 per layer from a key that is either a scalar (the same for every layer) or an array of
    /// `n_layers` integers: Gemma 4 writes `feed_forward_length` and `attention.head_count_kv` either way.
    pub fn get_u32_per_layer(&self, key: &str, n_layers: usize) -> Result<Vec<u32>, GgufError> {
        const EXPECTED: &str = "an integer or an array of integers";
        let value = self.require(key)?;
        if let Value::Array(array) = value {
            let integers = array.integers().ok_or_else(|| wrong_type(key, EXPECTED, value))?;
            if integers.len() != n_layers {
                return Err(GgufError::LayerCount { key: key.to_owned(), expected: n_layers, found: integers.len() });
            }
            return integers.into_iter().map(|integer| integer_to_u32(key, integer)).collect();
        }
        let integer = value.as_integer().ok_or_else(|| wrong_type(key, EXPECTED, value))?;
        Ok(vec![integer_to_u32(key, integer)?; n_layers])
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType { key: key.to_owned(), expected, found: found.type_description() }
}

fn integer_to_u32(key: &str, value: i128) -> Result<u32, GgufError> {
    u32::try_from(value).map_err(|_| GgufError::IntegerOutOfRange { key: key.to_owned(), value, target: "u32" })
}

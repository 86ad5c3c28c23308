//! Seconds since the context was created. `std::time::Instant` panics on wasm32-unknown-unknown, so the browser
//! build reads the JavaScript clock instead.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct Clock(std::time::Instant);

#[cfg(not(target_arch = "wasm32"))]
impl Clock {
    pub(crate) fn start() -> Self {
        Clock(std::time::Instant::now())
    }

    pub(crate) fn elapsed_s(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) struct Clock(f64);

#[cfg(target_arch = "wasm32")]
impl Clock {
    pub(crate) fn start() -> Self {
        Clock(js_sys::Date::now())
    }

    pub(crate) fn elapsed_s(&self) -> f64 {
        (js_sys::Date::now() - self.0) / 1000.0
    }
}

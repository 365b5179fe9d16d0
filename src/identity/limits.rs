//! The per-client-IP token bucket in front of sign-in, sign-up and password-reset requests
//! (`GATEHOUSE_AUTH_PER_MINUTE`, all tenants together). Over the limit: 429 `rate_limited` with `Retry-After`.

use std::net::IpAddr;

use governor::clock::{Clock, DefaultClock};

use crate::app::App;
use crate::error::{Error, Result};

/// Takes one token for `ip`, or says how long to wait.
pub fn check(app: &App, ip: Option<&str>) -> Result<()> {
    let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) else { return Ok(()) };
    match app.auth_limiter.check_key(&ip) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(Error::RateLimited { retry_after_secs: wait.as_secs().max(1) })
        }
    }
}

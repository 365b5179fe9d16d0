//! Pieces every admin page shares: the errors of a submitted form by field (`FieldErrors`, rendered by
//! `templates/admin/_form_errors.html` and next to each field), relative times with the exact one on hover
//! (`When`), and offset paging of lists with totals (`Paging`, rendered by `templates/admin/_paging.html`).

use crate::error::Error;
use crate::http::page::PageError;

/// The errors of one submitted form, by field name, in the order they were found. The field `form` holds what
/// belongs to no field.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    list: Vec<(String, String)>,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an error for `field` (a second one for the same field is appended to the first), written as a
    /// sentence: a capital first letter and a full stop.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let message = sentence(&message.into());
        match self.list.iter_mut().find(|(f, _)| f == field) {
            Some((_, existing)) => {
                existing.push(' ');
                existing.push_str(&message);
            }
            None => self.list.push((field.to_owned(), message)),
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.list.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every (field, message), in order, for the summary at the top of a form.
    pub fn all(&self) -> &[(String, String)] {
        &self.list
    }

    /// Files a service's error under a field: a validation-like error goes to the first field whose prefix
    /// starts its message (`("fields.", "fields")`), else to `form`. Any other error (a missing tenant, a
    /// database failure) is not the form's fault and comes back for the caller to return as the page.
    pub fn absorb(&mut self, err: Error, routes: &[(&str, &str)]) -> Result<(), PageError> {
        match &err {
            Error::Validation(_)
            | Error::Conflict(_)
            | Error::BadRequest(_)
            | Error::Unprocessable(_)
            | Error::PasswordRequired(_) => {
                let message = err.to_string();
                let field =
                    routes.iter().find(|(prefix, _)| message.starts_with(prefix)).map_or("form", |(_, field)| *field);
                self.add(field, message);
                Ok(())
            }
            _ => Err(PageError(err)),
        }
    }
}

/// `message` with a capital first letter and a closing full stop (unless it ends in other punctuation).
fn sentence(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    let Some(first) = chars.next() else { return String::new() };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?', ')']) {
        out.push('.');
    }
    out
}

/// A moment as pages show it: relative text ("3 min ago"), the exact UTC time for the hover title, and the
/// RFC 3339 value for `<time datetime>`.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub exact: String,
    pub ago: String,
}

impl When {
    pub fn at(unix: i64) -> Self {
        Self::relative_to(unix, crate::now_unix())
    }

    pub fn maybe(unix: Option<i64>) -> Option<Self> {
        unix.map(Self::at)
    }

    fn relative_to(unix: i64, now: i64) -> Self {
        let delta = now.saturating_sub(unix);
        let (amount, future) = (delta.unsigned_abs(), delta < 0);
        let span = match amount {
            0..=44 => None,
            45..=5399 => Some(format!("{} min", amount.div_ceil(60).max(1))),
            5400..=129_599 => Some(format!("{} h", (amount + 1800) / 3600)),
            129_600..=5_183_999 => Some(format!("{} days", (amount + 43_200) / 86_400)),
            _ => None,
        };
        let ago = match span {
            None if amount < 45 => "just now".to_owned(),
            // Further than two months: the date itself says more than "93 days ago".
            None => crate::format_time(unix).get(..10).unwrap_or("").to_owned(),
            Some(span) if future => format!("in {span}"),
            Some(span) => format!("{span} ago"),
        };
        When { iso: crate::format_time(unix), exact: crate::display_time(unix), ago }
    }
}

/// One page of a list: its place in the total and the links to the pages around it.
#[derive(Debug, Clone)]
pub struct Paging {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    /// 1-based number of the first and last row shown (0 and 0 when the list is empty).
    pub first: u64,
    pub last: u64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Paging {
    /// `base` is the page's path with its other query pairs, already URL-encoded
    /// (`/admin/tenants/a/users?q=bob&sort=email`); `prev` and `next` append `offset=`.
    pub fn new(total: u64, offset: u64, limit: u64, base: &str) -> Self {
        let limit = limit.max(1);
        let offset = offset.min(total.saturating_sub(1) / limit * limit);
        let join = if base.contains('?') { '&' } else { '?' };
        let link = |at: u64| if at == 0 { base.to_owned() } else { format!("{base}{join}offset={at}") };
        let shown = total.saturating_sub(offset).min(limit);
        Paging {
            total,
            offset,
            limit,
            first: if shown == 0 { 0 } else { offset + 1 },
            last: offset + shown,
            prev: (offset > 0).then(|| link(offset.saturating_sub(limit))),
            next: (offset + limit < total).then(|| link(offset + limit)),
        }
    }

    /// This page's items out of the whole list (for lists filtered and sorted in memory).
    pub fn window<T>(&self, items: impl IntoIterator<Item = T>) -> impl Iterator<Item = T> {
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        items.into_iter().skip(skip).take(usize::try_from(self.limit).unwrap_or(usize::MAX))
    }

    /// Whether there is more than one page (the links are worth showing).
    pub fn several(&self) -> bool {
        self.prev.is_some() || self.next.is_some()
    }
}

/// `a=1&b=x%20y`: the pairs URL-encoded, skipping empty values.
pub fn query_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.append_pair(key, value);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sentences_filed_by_prefix() {
        let mut errors = FieldErrors::new();
        errors.absorb(Error::validation("fields.age must be a number"), &[("fields.", "fields")]).unwrap();
        errors.absorb(Error::Conflict("that email is taken".into()), &[("fields.", "fields")]).unwrap();
        errors.add("fields", "another problem");
        assert_eq!(errors.get("fields"), Some("Fields.age must be a number. Another problem."));
        assert_eq!(errors.get("form"), Some("That email is taken."));
        assert_eq!(errors.all().len(), 2);
        assert!(errors.absorb(Error::TenantNotFound, &[]).is_err());
    }

    #[test]
    fn relative_times() {
        let now = 1_800_000_000;
        assert_eq!(When::relative_to(now - 5, now).ago, "just now");
        assert_eq!(When::relative_to(now - 180, now).ago, "3 min ago");
        assert_eq!(When::relative_to(now - 7200, now).ago, "2 h ago");
        assert_eq!(When::relative_to(now - 3 * 86_400, now).ago, "3 days ago");
        assert_eq!(When::relative_to(now + 600, now).ago, "in 10 min");
        assert_eq!(When::relative_to(now - 100 * 86_400, now).ago, crate::format_time(now - 100 * 86_400)[..10]);
        assert!(When::relative_to(now, now).exact.ends_with("UTC"));
    }

    #[test]
    fn paging_links_keep_the_query() {
        let p = Paging::new(120, 50, 50, "/x?q=a");
        assert_eq!((p.first, p.last), (51, 100));
        assert_eq!(p.prev.as_deref(), Some("/x?q=a"));
        assert_eq!(p.next.as_deref(), Some("/x?q=a&offset=100"));
        let last = Paging::new(120, 500, 50, "/x");
        assert_eq!((last.offset, last.first, last.last, last.next.is_none()), (100, 101, 120, true));
        let empty = Paging::new(0, 0, 50, "/x");
        assert_eq!((empty.first, empty.last, empty.several()), (0, 0, false));
        assert_eq!(query_pairs(&[("q", "x y"), ("s", "")]), "q=x+y");
    }
}

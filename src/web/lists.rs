//! What the admin lists share beside `ui::Paging`: the sort a list's query asks for and its column headers (links
//! that sort by the column, `aria-sort` on the current one), the `offset` of a query, and `path?query` links.
//! A list's links carry its whole view (search, filters, sort) in the query, so they can be bookmarked.

use super::ui::query_pairs;

/// The column a list is sorted by and the direction.
#[derive(Debug, Clone, Copy)]
pub struct Sort {
    pub key: &'static str,
    pub descending: bool,
}

/// A sortable column header: where its link leads and, on the sorted column, its `aria-sort` value.
pub struct SortHeader {
    pub href: String,
    pub aria: Option<&'static str>,
}

impl Sort {
    /// The sort a query's `sort` and `dir` ask for among `keys` (each with whether it sorts descending by
    /// default); an unknown or missing key is the first one.
    pub fn parse(sort: Option<&str>, dir: Option<&str>, keys: &[(&'static str, bool)]) -> Sort {
        let (key, default_descending) = keys
            .iter()
            .copied()
            .find(|(k, _)| Some(*k) == sort)
            .or_else(|| keys.first().copied())
            .unwrap_or(("", false));
        let descending = match dir {
            Some("asc") => false,
            Some("desc") => true,
            _ => default_descending,
        };
        Sort { key, descending }
    }

    /// `asc` or `desc`, as the query carries it.
    pub fn dir(&self) -> &'static str {
        if self.descending { "desc" } else { "asc" }
    }

    /// The header of column `key`: its link sorts by it (the other way round when it is the current sort, else in
    /// its default direction) from the first page, keeping `others` (search and filters) in the query.
    pub fn header(
        &self,
        key: &'static str,
        default_descending: bool,
        path: &str,
        others: &[(&str, &str)],
    ) -> SortHeader {
        let current = self.key == key;
        let descending = if current { !self.descending } else { default_descending };
        let mut pairs: Vec<(&str, &str)> = others.to_vec();
        pairs.push(("sort", key));
        pairs.push(("dir", if descending { "desc" } else { "asc" }));
        SortHeader {
            href: with_query(path, &query_pairs(&pairs)),
            aria: current.then_some(if self.descending { "descending" } else { "ascending" }),
        }
    }
}

/// The longest search text a list takes (longer text is cut): a LIKE pattern past SQLite's limit is an error.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A list's search text: trimmed, at most `MAX_SEARCH_CHARS` characters.
pub fn search_text(raw: Option<&str>) -> String {
    raw.map(str::trim).unwrap_or_default().chars().take(MAX_SEARCH_CHARS).collect()
}

/// A query's `offset`: a whole number, else 0.
pub fn offset_of(raw: Option<&str>) -> u64 {
    raw.and_then(|o| o.trim().parse().ok()).unwrap_or(0)
}

/// A searchable, sortable list's own address with its search and sort (what its paging links add `offset` to).
pub fn list_base(path: &str, text: &str, sort: &Sort) -> String {
    with_query(path, &super::ui::query_pairs(&[("q", text), ("sort", sort.key), ("dir", sort.dir())]))
}

/// `path?query`, or `path` alone for an empty query.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_toggle_the_current_column_and_keep_the_search() {
        let keys = [("created", true), ("email", false)];
        let sort = Sort::parse(Some("email"), None, &keys);
        assert_eq!((sort.key, sort.descending), ("email", false));
        let email = sort.header("email", false, "/u", &[("q", "bo b")]);
        assert_eq!(email.href, "/u?q=bo+b&sort=email&dir=desc");
        assert_eq!(email.aria, Some("ascending"));
        let created = sort.header("created", true, "/u", &[("q", "")]);
        assert_eq!((created.href.as_str(), created.aria), ("/u?sort=created&dir=desc", None));
        let fallback = Sort::parse(Some("nope"), Some("asc"), &keys);
        assert_eq!((fallback.key, fallback.descending), ("created", false));
        assert_eq!(offset_of(Some("50")), 50);
        assert_eq!(offset_of(Some("-3")), 0);
        assert_eq!(with_query("/u", ""), "/u");
    }
}

//! Where documents go: `siem.url` (and `siem.elasticsearch.index`) read into the cluster root,
//! the index and the `_bulk` parameters passed on; the `_bulk` and `_index_template` URLs.
//!
//! Invariant: a URL that names no usable index is refused here, when the config is read
//! (`Target::from_url`), so delivery never guesses where documents go.

/// What the agent reads from a bulk answer; everything else is filtered out by Elasticsearch.
pub(super) const FILTER_PATH: &str =
    "errors,items.*.status,items.*._id,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason";

/// `siem.url` query parameters that mean the same on `_bulk` and are passed on.
pub(super) const BULK_PARAMS: [&str; 6] = [
    "pipeline",
    "routing",
    "refresh",
    "timeout",
    "wait_for_active_shards",
    "require_alias",
];

/// Where documents go, derived from `siem.url` and `siem.elasticsearch.index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The cluster's base URL (scheme, host, any proxy path prefix); no query.
    pub root: reqwest::Url,
    pub index: String,
    /// Query parameters from `siem.url` passed on to `_bulk`.
    pub(crate) params: Vec<(String, String)>,
}

impl Target {
    /// Reads URLs as users write them: `https://host:9200/sendauth/_doc` (index `sendauth`), also
    /// `/sendauth/_bulk`, `/sendauth/_create/x`, `/sendauth`, or `/_bulk` with the index in
    /// `siem.elasticsearch.index` (which wins when both are given). Path segments before the
    /// index are kept as a proxy prefix. Errors name the key (under `siem.`) to fix.
    pub(crate) fn from_url(url: &reqwest::Url, index: Option<&str>) -> Result<Target, (&'static str, String)> {
        let segs: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let (prefix, url_index) = match segs.iter().position(|s| s.starts_with('_')) {
            Some(0) => (&segs[..0], None),
            Some(p) => (&segs[..p - 1], Some(segs[p - 1])),
            None => match segs.split_last() {
                Some((last, rest)) => (rest, Some(*last)),
                None => (&segs[..0], None),
            },
        };
        let (index, key) = match (index, url_index) {
            (Some(i), _) => (i, "elasticsearch.index"),
            (None, Some(i)) => (i, "url"),
            (None, None) => return Err((
                "elasticsearch.index",
                "required: siem.url names no index (write it like https://host:9200/sendauth/_doc) and siem.elasticsearch.index is not set"
                    .into(),
            )),
        };
        if let Err(why) = check_index_name(index) {
            return Err((key, format!("{index:?} is not a valid Elasticsearch index name: {why}")));
        }
        let mut params = Vec::new();
        for (k, v) in url.query_pairs() {
            if !BULK_PARAMS.contains(&k.as_ref()) {
                return Err((
                    "url",
                    format!(
                        "query parameter {k:?} is not passed to _bulk; remove it (kept: {})",
                        BULK_PARAMS.join(", ")
                    ),
                ));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        let mut root = url.clone();
        root.set_query(None);
        root.set_fragment(None);
        root.set_path(&format!("/{}", prefix.join("/")));
        Ok(Target {
            root,
            index: index.to_string(),
            params,
        })
    }

    pub(super) fn endpoint(&self, path: &[&str]) -> reqwest::Url {
        let mut u = self.root.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            p.extend(path);
        }
        u
    }

    pub(crate) fn bulk_url(&self) -> reqwest::Url {
        let mut u = self.endpoint(&["_bulk"]);
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in &self.params {
                q.append_pair(k, v);
            }
            q.append_pair("filter_path", FILTER_PATH);
        }
        u
    }

    pub(crate) fn template_url(&self, name: &str) -> reqwest::Url {
        self.endpoint(&["_index_template", name])
    }
}

/// Elasticsearch's index naming rules, checked before anything is sent: a bad name would fail
/// every document.
pub(super) fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("it is empty, \".\" or \"..\"");
    }
    if name.len() > 255 {
        return Err("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err("it must be lowercase");
    }
    if name.starts_with(['-', '_', '+']) {
        return Err("it must not start with -, _ or +");
    }
    if name.chars().any(|c| c.is_whitespace() || "\\/*?\"<>|,#:".contains(c)) {
        return Err("it must not contain spaces or any of \\ / * ? \" < > | , # :");
    }
    Ok(())
}

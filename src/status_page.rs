//! The status page served at `GET /`: one self-contained HTML document (no external assets)
//! that polls `/status` and shows what the SendAuth settings page shows.

pub(crate) const PAGE: &str = include_str!("status_page.html");

//! The query parameters the staff pages, the patient pages and the staff JSON API read the same
//! way: whose view of a record (`as`, `proxy`) and which page of it (`section`, `cursor`, `limit`).

use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::AppError;
use caldicott_core::entry::Section;
use caldicott_core::ids::ProxyLinkId;
use std::collections::HashMap;

/// `as=patient` (the default) or `as=proxy&proxy=<link id>`.
pub(crate) fn view_as(q: &HashMap<String, String>) -> Result<ViewAs, AppError> {
    match q.get("as").map(String::as_str) {
        None | Some("") | Some("patient") => Ok(ViewAs::Patient),
        Some("proxy") => {
            let id =
                q.get("proxy").ok_or_else(|| AppError::BadRequest("as=proxy needs proxy=<proxy link id>".into()))?;
            Ok(ViewAs::Proxy(
                id.parse::<ProxyLinkId>()
                    .map_err(|_| AppError::BadRequest(format!("{id:?} is not a proxy link id")))?,
            ))
        }
        Some(other) => Err(AppError::BadRequest(format!("as must be patient or proxy, not {other:?}"))),
    }
}

/// Which page of a record: `section` (all by default), `cursor` and `limit`.
pub(crate) fn page_request(q: &HashMap<String, String>) -> Result<PageRequest, AppError> {
    let section = match q.get("section").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(s) => Some(Section::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
            AppError::BadRequest(format!("unknown section {s:?}; use one of {}", names.join(", ")))
        })?),
    };
    let limit = q
        .get("limit")
        .map(|l| l.parse::<u32>().map_err(|_| AppError::BadRequest(format!("limit must be a whole number, not {l:?}"))))
        .transpose()?;
    Ok(PageRequest { section, cursor: q.get("cursor").cloned().filter(|c| !c.is_empty()), limit })
}

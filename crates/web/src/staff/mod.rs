//! The staff portal's pages that work on a patient's record and on the practice: server-rendered,
//! working without JavaScript. One module per feature; each uses the HTML kernel
//! (`crate::kernel`) and none uses another, except that the access panel's JSON twin
//! (`access_api`) words its answers as the panel does (`access`).

mod access;
mod access_api;
mod accounts;
mod consultation;
mod filing;
mod letters;
mod passwords;
mod record;
mod registration;
mod search;
mod settings;
mod sign_in;
mod split;
mod trail;
mod transfer;
mod visibility;

use axum::Router;
use caldicott_app::App;

/// The pages' routes.
pub fn routes() -> Router<App> {
    Router::new()
        .merge(sign_in::routes())
        .merge(passwords::routes())
        .merge(search::routes())
        .merge(record::routes())
        .merge(visibility::routes())
        .merge(split::routes())
        .merge(access::routes())
        .merge(trail::routes())
        .merge(settings::routes())
        .merge(consultation::routes())
        .merge(accounts::routes())
        .merge(registration::routes())
        .merge(letters::routes())
        .merge(transfer::routes())
        .merge(filing::routes())
}

/// The routes of the staff JSON API that belong to these features (mounted under `/api/v1`).
pub fn api_routes() -> Router<App> {
    access_api::routes()
}

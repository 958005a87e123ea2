// examples/quickstart.rs — `cargo run --example quickstart` (REDIS_URL and PORT from the environment, or the defaults).
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jwtdeny::{AsyncJwtdeny, Claims, Guard, Token};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

type Jwtdeny = AsyncJwtdeny<ConnectionManager>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2))) // while Redis is down, fail fast (503) ...
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1); // ... and let the next request reconnect
    let redis = ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, config)?;
    let jwtdeny = AsyncJwtdeny::new(redis);

    let app = Router::new()
        .route(
            "/me",
            get(|claims: Claims| async move { Json(claims.into_map()) }),
        )
        .route("/logout", post(logout))
        .layer(Guard::new().layer(jwtdeny.clone())) // 401 / 403 / 503; Claims = the verified claims
        .with_state(jwtdeny);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on {port}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn logout(State(jwtdeny): State<Jwtdeny>, Token(token): Token) -> Json<serde_json::Value> {
    let revoked = jwtdeny.revoke(&token).await.unwrap_or(false);
    Json(serde_json::json!({ "revoked": revoked }))
}

//! `corral whoami`: who the credentials authenticate as (`GET /whoami`) and where.

use serde_json::json;

use crate::App;
use crate::error::Result;

pub async fn run(app: &App) -> Result<()> {
    let c = app.client()?;
    let mut v = c.get("/whoami").await?;
    v["addr"] = json!(c.connection().addr);
    if let Some(ctx) = app.global.context.clone().or_else(|| {
        crate::config::path()
            .ok()
            .and_then(|p| crate::config::ConfigFile::load(&p).ok())
            .and_then(|f| f.current)
    }) {
        v["context"] = json!(ctx);
    }
    if app.out.quiet {
        app.out.object(
            &json!(format!(
                "{}@{}",
                v["user"].as_str().unwrap_or(""),
                v["tenant"].as_str().unwrap_or("")
            )),
            "",
        );
    } else {
        app.out.object(&v, "/user");
    }
    Ok(())
}

//! The search space's settings for the stages around the search, interpreted: the search
//! keeps them as plain data (names, tables); here they become the backend, the importance
//! method, the GCN's and gcn-rl's configurations, each error naming the file, line and key.

use crate::exec::Backend;
use crate::gcn::GcnConfig;
use crate::gcn_rl::GcnRlConfig;
use crate::importance::Method;
use crate::remote::{DeviceSpec, read_token};
use crate::search::space::SearchSpace;
use crate::spec::SpecError;
use clap::ValueEnum;

/// What the pipeline's stages take from a search space besides the search itself.
#[derive(Clone, Debug)]
pub struct StageSettings {
    /// `[evaluate] backend`.
    pub backend: Backend,
    /// `[search] importance`.
    pub method: Method,
    /// The GCN encoder's training (`[search] gcn_steps`, `[search] seed`).
    pub gcn: GcnConfig,
    /// `[importance.gcn_rl]`, defaults filled in.
    pub gcn_rl: GcnRlConfig,
    /// `[evaluate] devices`: the candidates' workers (empty: the backend's device).
    pub devices: Vec<DeviceSpec>,
    /// The remote devices' token (`[evaluate] token_file`, else `SACP_REMOTE_TOKEN`).
    pub token: Option<String>,
}

/// The names a value enum accepts, for error messages.
fn names<T: ValueEnum>() -> String {
    T::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Interprets and checks the settings of `space` that belong to other stages.
pub fn interpret(space: &SearchSpace) -> Result<StageSettings, SpecError> {
    if let Some((kind, _)) = space.data.dataset.split_once(':')
        && !crate::data::KINDS.contains(&kind)
    {
        return Err(space.error(
            "data.dataset",
            format!("unknown kind `{kind}`; valid: {}", crate::data::KINDS.join(", ")),
        ));
    }
    let backend = Backend::from_str(&space.evaluate.backend, false).map_err(|_| {
        space.error(
            "evaluate.backend",
            format!("unknown backend `{}`; valid: {}", space.evaluate.backend, names::<Backend>()),
        )
    })?;
    let method = Method::from_str(&space.search.importance, false).map_err(|_| {
        space.error(
            "search.importance",
            format!(
                "unknown importance method `{}`; valid: {}",
                space.search.importance,
                names::<Method>()
            ),
        )
    })?;
    let gcn = GcnConfig {
        steps: space.search.gcn_steps.unwrap_or(GcnConfig::default().steps),
        seed: space.search.seed,
        ..GcnConfig::default()
    };
    let gcn_rl = GcnRlConfig::parse(&space.text, &space.file)?;
    if method == Method::GcnRl {
        if space.constraints.macs_reduction.is_none() {
            return Err(space.error(
                "search.importance",
                "`gcn-rl` rewards meeting a MAC target: give `constraints.macs_reduction`",
            ));
        }
        if let Some((key, message)) = gcn_rl.problem() {
            return Err(space.error(&format!("importance.gcn_rl.{key}"), message));
        }
    }
    let (devices, token) = workers(space)?;
    Ok(StageSettings {
        backend,
        method,
        gcn,
        gcn_rl,
        devices,
        token,
    })
}

/// `[evaluate] devices`, parsed, and the token when any of them is remote: from
/// `[evaluate] token_file` if given, else the environment variable `SACP_REMOTE_TOKEN`.
fn workers(space: &SearchSpace) -> Result<(Vec<DeviceSpec>, Option<String>), SpecError> {
    let e = &space.evaluate;
    let devices = e
        .devices
        .iter()
        .map(|name| {
            name.parse::<DeviceSpec>()
                .map_err(|err| space.error("evaluate.devices", err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in devices.iter().enumerate() {
        if devices[..i].contains(d) {
            return Err(space.error("evaluate.devices", format!("`{d}` is listed twice")));
        }
    }
    let token = match &e.token_file {
        Some(file) => Some(read_token(&space.resolve(file)).map_err(|err| space.error("evaluate.token_file", err))?),
        None => std::env::var("SACP_REMOTE_TOKEN").ok().filter(|t| !t.trim().is_empty()),
    };
    if token.is_none()
        && let Some(remote) = devices.iter().find(|d| d.is_remote())
    {
        return Err(space.error(
            "evaluate.devices",
            format!(
                "`{remote}` is remote and no token is given: set the environment variable SACP_REMOTE_TOKEN or `[evaluate] token_file` (never the token itself in this file)"
            ),
        ));
    }
    Ok((devices, token))
}

/// A hash of everything that decides which candidates are evaluated and how they score
/// (not the budget, `[finetune]` or `[output]`): a log written under another fingerprint
/// cannot be resumed.
pub fn fingerprint(space: &SearchSpace, settings: &StageSettings) -> String {
    use sha2::{Digest, Sha256};
    let search = &space.search;
    let mut evaluate = serde_json::to_value(&space.evaluate).expect("settings serialise");
    evaluate["backend"] = serde_json::to_value(settings.backend).expect("a backend serialises");
    // Which workers evaluate does not change a result: a search resumes on other devices.
    if let Some(e) = evaluate.as_object_mut() {
        e.remove("devices");
        e.remove("token_file");
    }
    let decisive = serde_json::json!({
        "model": space.model, "train": space.train, "data": space.data, "space": space.space,
        "constraints": space.constraints, "search": {
            "strategy": search.strategy,
            "gcn_top_m": search.gcn_top_m, "pool": search.pool,
            "ranking": search.ranking, "importance": settings.method,
            "gcn_steps": settings.gcn.steps, "seed": search.seed,
        },
        "evaluate": evaluate,
        "importance": (settings.method == Method::GcnRl).then(|| serde_json::json!({ "gcn_rl": settings.gcn_rl })),
    });
    let digest = Sha256::digest(decisive.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

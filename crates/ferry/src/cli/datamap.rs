//! `ferry datamap`: which data categories may reach which systems, through which flows and
//! destinations, and how each is protected there. From a config directory (no hub needed),
//! or from a running hub's admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_protect::DataMap;

use super::HubTarget;
use super::admin_cmds::client;

/// Arguments of `ferry datamap`.
#[derive(Debug, Args)]
pub struct DatamapArgs {
    /// Read the map from this config directory (as `ferry validate` does; no hub needed).
    /// Without it, the running hub's admin API answers (`--url`/`--token`, or `--config`).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub target: HubTarget,
    /// Only this data category and those under it (e.g. `user.contact.email`).
    #[arg(long, value_name = "KEY")]
    pub category: Option<String>,
    /// Only destinations of this system.
    #[arg(long, value_name = "SYSTEM")]
    pub system: Option<String>,
    /// Print JSON (`{"rows": [...]}`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Print the data map, selected.
pub async fn run(args: DatamapArgs) -> Result<ExitCode> {
    let map = match &args.dir {
        Some(dir) => {
            let Some(config) = super::serve::load_config(dir, false) else {
                bail!("the config in {} is invalid", dir.display());
            };
            let registry = ferry_schema::SchemaRegistry::load(&config)
                .map_err(|problems| anyhow::anyhow!("{} schema problem(s)", problems.len()))?;
            DataMap::build(&config, &registry)
                .select(args.category.as_deref(), args.system.as_deref())
        }
        None => {
            client(&args.target)?
                .datamap(args.category.as_deref(), args.system.as_deref())
                .await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        print(&map, args.category.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

fn print(map: &DataMap, category: Option<&str>) {
    if map.rows.is_empty() {
        match category {
            Some(c) => println!("No flow carries `{c}` (or a category under it)."),
            None => println!("No flow carries a classified field."),
        }
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "category",
            "flow",
            "destination",
            "system",
            "protection",
            "fields",
        ]);
    for r in &map.rows {
        table.add_row([
            r.category.clone(),
            format!("{} (v{})", r.flow, r.flow_version),
            r.destination.clone(),
            match &r.data_use {
                Some(u) => format!("{} ({u})", r.system),
                None => r.system.clone(),
            },
            r.protection.clone(),
            r.fields.join("\n"),
        ]);
    }
    println!("{table}");
    let receiving: Vec<String> = map
        .receiving_systems()
        .into_iter()
        .map(|(system, how)| format!("{system} ({how})"))
        .collect();
    let what = category.map_or("classified data".to_string(), |c| format!("`{c}`"));
    if receiving.is_empty() {
        println!("No system receives {what}.");
    } else {
        println!("Systems receiving {what}: {}", receiving.join(", "));
    }
}

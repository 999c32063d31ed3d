//! The split proposal of `whittle plan`: for a target role that two or more Lambda functions
//! share (as the last `discover` listed them), one role per function from what each
//! function's session used (the planner's `plan::split`). Reads the state only.

use std::collections::HashMap;

use whittle_planner::catalog::Catalog;
use whittle_planner::plan::split::{ListedFunction, propose_split};
use whittle_planner::plan::{RolePlan, Settings};
use whittle_state::State;

use crate::ports::FunctionSummary;
use crate::records::{FunctionInventory, NeededActions, StoredUsage};

/// Execution role ARN -> its functions, from the last discovery of every account.
pub fn discovered_functions(
    state: &State,
) -> anyhow::Result<HashMap<String, Vec<FunctionSummary>>> {
    let mut by_role: HashMap<String, Vec<FunctionSummary>> = HashMap::new();
    for item in state.tree::<FunctionInventory>()?.iter() {
        let (_, inventory) = item?;
        for f in inventory.functions {
            by_role.entry(f.role.clone()).or_default().push(f);
        }
    }
    Ok(by_role)
}

/// Adds a split proposal to each role of `roles` that discovered functions share. The
/// planner matches the role's sessions to the functions listed with it and says who stays on
/// the shared role (`plan::split::propose_split`).
pub fn split_shared_roles(
    state: &State,
    roles: &mut [RolePlan],
    settings: &Settings,
    catalog: &Catalog,
) -> anyhow::Result<()> {
    let by_role = discovered_functions(state)?;
    if by_role.is_empty() {
        return Ok(());
    }
    let usage = state.tree::<StoredUsage>()?;
    let needed = state.tree::<NeededActions>()?;
    for role in roles.iter_mut() {
        let Some(functions) = by_role.get(&role.role_arn) else {
            continue;
        };
        let Some(StoredUsage { usage: stored, .. }) = usage.get(&role.role_arn)? else {
            continue;
        };
        let listed: Vec<ListedFunction<'_>> = functions
            .iter()
            .map(|f| ListedFunction {
                name: &f.name,
                arn: &f.arn,
                revision: f.revision.as_deref(),
            })
            .collect();
        let needed: Vec<String> = needed
            .get(&role.role_arn)?
            .map(|n| n.actions.into_keys().collect())
            .unwrap_or_default();
        role.split = propose_split(role, &stored, &listed, &needed, settings, catalog);
    }
    Ok(())
}

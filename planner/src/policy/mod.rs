//! IAM policies: the document model, the evaluator, and wildcard expansion.
//!
//! - [`document`]: parse (strictly, with the element's path in errors) and serialize
//!   (in the shape it was written) identity, boundary, resource and trust policies.
//! - [`eval`]: IAM's evaluation logic for identity policies and a permissions boundary,
//!   three-valued so that an unknown condition key yields "depends on condition".
//! - [`pattern`]: wildcard and policy-variable matching of actions, ARNs and strings.

pub mod document;
pub mod eval;
pub mod pattern;

#[cfg(test)]
mod cases;

pub use document::{
    ConditionBlock, ConditionValue, Effect, OneOrMany, PolicyDocument, PolicyError, Principal,
    Statement,
};
pub use eval::{Context, Decision, Evaluation, NamedPolicy, Request, Truth, evaluate, named};

//! The rules of linking and of users, as pure functions over plain data.

pub mod audit;
pub mod ids;
pub mod invented;
pub mod linking;
pub mod model;
pub mod payload;
pub mod search;
pub mod users;

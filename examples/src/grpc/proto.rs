//! The messages of `users.Users`, as prost would generate them.

use crate::user;

/// The path of the unary method `users.Users/Get`.
pub const GET: &str = "/users.Users/Get";

/// `users.GetUser`: which user `Get` returns.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetUser {
    /// The user's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// `users.User`: the HTTP API's [`user::User`], field for field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct User {
    /// The user's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The user's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The user's email address.
    #[prost(string, tag = "3")]
    pub email: String,
}

impl From<user::User> for User {
    fn from(u: user::User) -> Self {
        User {
            id: u.id,
            name: u.name,
            email: u.email,
        }
    }
}

impl From<User> for user::User {
    fn from(u: User) -> Self {
        user::User {
            id: u.id,
            name: u.name,
            email: u.email,
        }
    }
}

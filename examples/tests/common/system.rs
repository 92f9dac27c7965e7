//! The whole example system in process: the Consul-compatible registry,
//! three user-service instances sharing a store, the order service and the
//! gateway, on 127.0.0.1:0.

use std::sync::Arc;

use meshguard::testing::ConsulRegistry;
use meshguard_examples::clients::{Users, service_client};
use meshguard_examples::config::{Protocol, Upstream};
use meshguard_examples::events::Publisher;
use meshguard_examples::gateway::{ADMIN, GatewayState, JwtConfig};
use meshguard_examples::order::OrderState;
use meshguard_examples::server::Instance;
use meshguard_examples::user::{MemoryStore, UserState};
use serde_json::Value;

use super::Redis;

/// The gateway's key in these tests (32 bytes, the shortest accepted).
pub const SECRET: &[u8] = b"e2e-secret-of-thirty-two-bytes!!";

/// The running system and a client of it holding an admin token.
pub struct System {
    _consul: ConsulRegistry,
    /// The user-service instances (their store is [`store`](Self::store)).
    pub users: Vec<Instance>,
    /// The users' shared store.
    pub store: Arc<MemoryStore>,
    /// The order service.
    pub orders: Instance,
    /// The order service's state.
    pub order_state: OrderState,
    /// The gateway.
    pub gateway: Instance,
    /// The user instances' event publishers (with Redis).
    pub publishers: Vec<Publisher>,
    /// A client without timeouts of its own.
    pub http: reqwest::Client,
    /// The gateway's token rules and key.
    pub jwt: JwtConfig,
    /// `Bearer <admin token>`.
    pub auth: String,
}

impl System {
    /// Starts it, publishing and consuming events through `redis` if any.
    pub async fn start(redis: Option<&Redis>) -> System {
        meshguard_examples::telemetry::prometheus();
        let consul = ConsulRegistry::start().await;
        let upstream = |service: &str| Upstream::Consul {
            address: consul.url(),
            service: service.into(),
        };
        let store = Arc::new(MemoryStore::default());
        let (mut users, mut publishers) = (Vec::new(), Vec::new());
        for n in 1..=3 {
            let events = redis.map(|r| Publisher::start(&r.url()).unwrap());
            publishers.extend(events.clone());
            let app = meshguard_examples::user::app(UserState {
                store: store.clone(),
                events,
            });
            let instance = Instance::start(app).await;
            consul.register_passing(
                "user-service",
                &format!("user-{n}"),
                "127.0.0.1",
                instance.addr.port(),
            );
            users.push(instance);
        }
        let order_state = OrderState::new(Users::new(Protocol::Grpc, &upstream("user-service")));
        if let Some(r) = redis {
            let view = order_state.clone();
            tokio::spawn(meshguard_examples::events::consume(
                r.url(),
                "order-service",
                "order-1".into(),
                move |e| view.apply(e),
            ));
        }
        let orders = Instance::start(meshguard_examples::order::app(order_state.clone())).await;
        consul.register_passing("order-service", "order-1", "127.0.0.1", orders.addr.port());
        let jwt = JwtConfig::new(SECRET).unwrap();
        let gateway = Instance::start(meshguard_examples::gateway::app(GatewayState::new(
            service_client("user-service", &upstream("user-service")),
            service_client("order-service", &upstream("order-service")),
            jwt.clone(),
            10_000,
        )))
        .await;
        let auth = format!("Bearer {}", jwt.token("e2e", &[ADMIN]));
        System {
            _consul: consul,
            users,
            store,
            orders,
            order_state,
            gateway,
            publishers,
            http: reqwest::Client::new(),
            jwt,
            auth,
        }
    }

    /// Calls the gateway as the admin.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.auth, method, path, body).await
    }

    /// Calls the gateway with `authorization: {auth}`.
    pub async fn call_as(
        &self,
        auth: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gateway.url()))
            .header("authorization", auth);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("the gateway answers");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates user `name` (`{name}@example.com`) as the admin: its id.
    pub async fn create_user(&self, name: &str) -> u64 {
        let (status, user) = self
            .call(
                reqwest::Method::POST,
                "/api/users",
                Some(serde_json::json!({ "name": name, "email": format!("{name}@example.com") })),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_u64().unwrap()
    }

    /// Places an order of one `item` for `user_id` as the admin.
    pub async fn place_order(&self, user_id: u64, item: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/orders",
            Some(serde_json::json!({ "user_id": user_id, "item": item, "quantity": 1 })),
        )
        .await
    }

    /// Whether the order service learnt of user `id` from an event.
    pub fn knows(&self, id: u64) -> bool {
        self.order_state
            .known_users
            .read()
            .unwrap()
            .contains_key(&id)
    }

    /// `Bearer <token>` for user `id` (no role).
    pub fn user_auth(&self, id: u64) -> String {
        format!("Bearer {}", self.jwt.token(&id.to_string(), &[]))
    }
}

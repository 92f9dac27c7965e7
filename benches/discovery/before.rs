//! The watch's query as it was: rs-consul 0.15's `get_service_nodes` (a
//! new connection a query, no gzip, `serde_json::from_reader` over the
//! collected chunks, on the calling worker). Each query here fetches the
//! whole list, as a blocking query that returns on a change does.

use std::time::Duration;

use rs_consul::{Config, Consul, GetServiceNodesRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::measure::{StallProbe, cpu, median_max};

/// Per query: CPU (median), worst worker stall (busy, late), bytes of the
/// answer.
pub struct Before {
    pub cpu: Duration,
    pub stall: (Duration, Duration),
    pub bytes: u64,
}

pub async fn measure(url: &str, n: usize, queries: usize) -> Before {
    let consul = Consul::new(Config {
        address: url.to_string(),
        ..Config::default()
    });
    let query = || async {
        let request = GetServiceNodesRequest {
            service: "users",
            passing: true,
            ..Default::default()
        };
        let nodes = consul.get_service_nodes(request, None).await.unwrap();
        assert_eq!(nodes.response.len(), n);
    };
    query().await;
    let mut samples = Vec::new();
    for _ in 0..queries {
        let start = cpu();
        query().await;
        samples.push(cpu() - start);
    }
    let probe = StallProbe::start();
    tokio::time::sleep(Duration::from_millis(20)).await;
    probe.take();
    for _ in 0..queries {
        query().await;
    }
    let stall = probe.take();
    Before {
        cpu: median_max(&mut samples).0,
        stall,
        bytes: plain_size(url).await,
    }
}

/// The size of the plain answer's body.
async fn plain_size(url: &str) -> u64 {
    get(url, false).await
}

/// The size of the answer's body, by HTTP/1.0, gzipped or not.
pub async fn get(url: &str, gzip: bool) -> u64 {
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    let request =
        format!("GET /v1/health/service/users?passing HTTP/1.0\r\nHost: x\r\n{encoding}\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let head = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (answer.len() - head) as u64
}

//! A real Kafka-protocol broker (tansu) on a free loopback port, one per test binary,
//! always stopped: when dropped, and when the test process ends without dropping it (the
//! broker shared by a test binary lives in a static, which is never dropped).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use synchro_bus::Bus;
use synchro_bus::kafka::{Kafka, KafkaSettings};

pub struct Broker {
    pub address: String,
    _child: ChildGuard,
}

/// Runs tansu under a small shell that stops it when told to (SIGTERM) and when the test
/// process is gone, so that no broker outlives the tests that started it.
const WATCHER: &str = r#"
"$0" "$@" & broker=$!
trap 'kill -KILL $broker 2>/dev/null; wait $broker; exit 0' TERM
while kill -0 "$SYNCHRO_TEST_PID" 2>/dev/null && kill -0 $broker 2>/dev/null; do
  sleep 0.2
done
kill -KILL $broker 2>/dev/null
wait $broker
"#;

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGTERM, which the watcher passes on and waits for: the port is free after this.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn tansu() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    let in_cargo_home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path.or(in_cargo_home.filter(|p| p.is_file())).expect(
        "the Kafka tests need the tansu broker: `./dev test` installs it \
         (cargo install --locked tansu --features dynostore)",
    )
}

/// The broker shared by this test binary's Kafka tests (each uses its own topic prefix).
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(Broker::start)
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Broker {
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let guard = ChildGuard(watched(&url, std::process::id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not accept connections on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            address,
            _child: guard,
        }
    }
}

/// tansu on `url` under the watcher, stopped once the process `owner` is gone.
fn watched(url: &str, owner: u32) -> Child {
    Command::new("sh")
        .args(["-c", WATCHER])
        .arg(tansu())
        .env("SYNCHRO_TEST_PID", owner.to_string())
        .args([
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tansu")
}

/// A Kafka bus on the shared broker, with a topic prefix of its own so that tests do not
/// see each other's topics.
pub fn kafka_bus() -> Bus {
    kafka_bus_on(
        &shared().address,
        &format!("t{}.", uuid::Uuid::new_v4().simple()),
    )
}

/// A Kafka bus on the broker at `address` with `prefix`.
pub fn kafka_bus_on(address: &str, prefix: &str) -> Bus {
    let settings = KafkaSettings {
        brokers: address.to_owned(),
        topic_prefix: prefix.to_owned(),
        partitions: 1,
        replication: 1,
        delivery_timeout: Duration::from_secs(20),
        properties: Default::default(),
    };
    Bus::Kafka(Kafka::new(settings, synchro_bus::kafka::Member::Ephemeral).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared broker lives in a static that is never dropped: the watcher is what
    /// stops it when its test process ends (brokers leaked before it existed).
    #[test]
    fn a_broker_stops_when_the_process_that_started_it_is_gone() {
        let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let mut broker = watched(&format!("tcp://{address}"), owner.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "tansu never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        owner.kill().unwrap();
        owner.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while broker.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the broker outlived its owner by 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            TcpStream::connect(&address).is_err(),
            "nothing listens on {address} any more"
        );
    }
}

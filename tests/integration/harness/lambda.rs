//! The Lambda test servers: the Invoke API double (the `gangway-invoke-double` crate, shared
//! with `cargo xtask bench lambda`) and AWS's runtime emulator with the suite's function.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use gangway_invoke_double::{
    ACCESS_KEY, ASSUMED_KEY, Invoke, REGION, SECRET_KEY, WEB_IDENTITY_TOKEN, rfc3339,
};

/// AWS's Lambda runtime emulator (`cargo lambda watch --only-lambda-apis`, from the PyPI
/// package `cargo-lambda`) with the suite's function (`tests/lambda-fn`, built on
/// `lambda_runtime`) attached to it: invoking function [`CargoLambda::FUNCTION`] at
/// [`CargoLambda::addr`] runs that function. Both processes stop on drop.
pub struct CargoLambda {
    /// The emulator's Invoke API.
    pub addr: SocketAddr,
    emulator: std::process::Child,
    function: std::process::Child,
}

impl CargoLambda {
    /// The name the emulator gives a function started apart from it.
    pub const FUNCTION: &'static str = "_";

    /// Starts the emulator on a free port, then the function.
    pub fn start() -> CargoLambda {
        use std::process::{Command, Stdio};
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo.join("target"), std::path::PathBuf::from);
        let binary = target.join("debug/gangway-test-lambda");
        assert!(
            binary.exists(),
            "the test function {} is missing: build it with `cargo build -p gangway-test-lambda` \
             (`cargo xtask test` does)",
            binary.display()
        );
        let port = super::free_port();
        let emulator = Command::new("cargo-lambda")
            .args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(repo.join("tests/lambda-fn"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run cargo-lambda ({e}): install it with \
                     `python3 -m pip install cargo-lambda` (.ci/run does)"
                )
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "cargo lambda watch did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let function = Command::new(&binary)
            .env_clear()
            .env("AWS_LAMBDA_FUNCTION_NAME", Self::FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://{addr}/.rt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test function");
        CargoLambda {
            addr,
            emulator,
            function,
        }
    }
}

impl Drop for CargoLambda {
    fn drop(&mut self) {
        for child in [&mut self.function, &mut self.emulator] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

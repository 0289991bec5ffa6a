//! `cargo xtask bench lambda`: what a Lambda-backed route costs gangway. One route invokes a
//! function through aws-lambda (API Gateway REST events, proxy integration) on the Invoke API
//! double (`tests/invoke-double`, a process of its own that checks each SigV4 signature and
//! parses each event); the other proxies to an nginx upstream. Both run in the same
//! interleaved rounds; the difference in gangway's CPU per request is what an invocation
//! adds (building the event, signing, the SDK's client, reading the answer).
//!
//! It also reports what the AWS SDK costs the build: the release binary's size with and
//! without the `lambda` feature, and with `--build-cost` the time of a clean release build
//! of each (two full builds, several minutes).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{
    Contender, Load, Params, Proc, build_release, compare, free_port, gangway, plain_config,
    scratch_dir, upstream, wait_port,
};

/// What the double says on its first line: where it listens and the credentials it takes.
struct Double {
    port: u16,
    region: String,
    key: String,
    secret: String,
}

/// Parses `listening on <addr> region <r> key <k> secret <s>`.
fn parse_banner(line: &str) -> Result<Double> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [
        "listening",
        "on",
        addr,
        "region",
        region,
        "key",
        key,
        "secret",
        secret,
    ] = words[..]
    else {
        bail!("the Invoke API double said {line:?}");
    };
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in {addr}"))?;
    Ok(Double {
        port,
        region: region.into(),
        key: key.into(),
        secret: secret.into(),
    })
}

/// The route and its aws-lambda instance, calling the double's `apigw-v1` function.
fn lambda_config(double: &Double) -> String {
    format!(
        "_format_version: \"3.0\"\nroutes:\n  - name: lambda\n    paths: [\"/\"]\n    plugins:\n      - name: aws-lambda\n        config:\n          aws_key: {}\n          aws_secret: {}\n          aws_region: {}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: apigw-v1\n          awsgateway_compatible: true\n          is_proxy_integration: true\n          log_type: None\n",
        double.key, double.secret, double.region, double.port,
    )
}

/// Builds the double (release) and returns its path.
fn build_double(root: &Path) -> Result<std::path::PathBuf> {
    let status = crate::cargo_command()
        .args(["build", "--release", "-p", "gangway-invoke-double"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p gangway-invoke-double failed");
    }
    Ok(root.join("target/release/gangway-invoke-double"))
}

/// Runs the benchmark.
pub fn run(p: &Params, build_cost: bool) -> Result<()> {
    let (root, bin) = build_release()?;
    let double = build_double(&root)?;
    let dir = scratch_dir()?;
    let (_upstream, up_port) = upstream(&dir)?;
    let mut child = Command::new(&double)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the Invoke API double")?;
    let mut banner = String::new();
    let stdout = child.stdout.take().context("the double's stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut banner)?;
    let invoke = Proc {
        child,
        name: "invoke-double".into(),
        status: None,
    };
    let double = parse_banner(&banner)?;
    wait_port(double.port, "the Invoke API double")?;
    let (http_port, lambda_port) = (free_port()?, free_port()?);
    let contenders = vec![
        Contender {
            name: "gangway-http".into(),
            proc_: gangway(
                &bin,
                &dir,
                "gangway-http",
                "io_uring",
                http_port,
                &plain_config(up_port),
                p.workers,
            )?,
            port: http_port,
            load: None,
        },
        Contender {
            name: "gangway-lambda".into(),
            proc_: gangway(
                &bin,
                &dir,
                "gangway-lambda",
                "io_uring",
                lambda_port,
                &lambda_config(&double),
                p.workers,
            )?,
            port: lambda_port,
            load: None,
        },
    ];
    let setup = format!(
        "wrk -t1 -c{} -d{}s, {} interleaved rounds after {} s warm-up, {} gangway worker(s), io_uring; gangway-http proxies to nginx (1 worker, a 24-byte body); gangway-lambda invokes the Invoke API double (its own process, thread per connection, checking SigV4 and parsing each REST API event; it answers a proxy-integration response carrying the event, about 1.3 KB) over plain HTTP with keep-alive; medians shown",
        p.connections, p.duration_s, p.repeat, p.warmup_s, p.workers
    );
    let load = Load::root();
    let (summary, _) = compare(
        &root,
        &dir,
        "lambda",
        &setup,
        p,
        &contenders,
        &load,
        "gangway-http",
    )?;
    let added = summary[1].cpu_us_per_req - summary[0].cpu_us_per_req;
    let double_cpu = invoke.cpu_seconds();
    let mut notes = format!(
        "\ngangway's CPU per Lambda-backed request minus per proxied request: {added:.1} us (the added cost of an invocation).\nThe double used {double_cpu:.1} s of CPU over the whole run.\n"
    );
    drop(contenders);
    drop(invoke);
    let _ = writeln!(notes, "\n{}", binary_sizes(&root, &dir)?);
    if build_cost {
        let _ = writeln!(notes, "{}", clean_build_times(&root, &dir)?);
    }
    println!("{notes}");
    let latest = root.join("benches/results/lambda-latest.md");
    let mut text = std::fs::read_to_string(&latest)?;
    text.push_str(&notes);
    std::fs::write(&latest, text)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The release binary's size with and without the `lambda` feature, as built (line tables
/// included) and stripped. Each is built in the shared target directory, the default build
/// last, so target/release/gangway is left as it was.
fn binary_sizes(root: &Path, dir: &Path) -> Result<String> {
    let size = |features: &[&str]| -> Result<(u64, u64)> {
        let status = crate::cargo_command()
            .args(["build", "--release", "-p", "gangway"])
            .args(features)
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!("cargo build --release {features:?} failed");
        }
        let built = root.join("target/release/gangway");
        let stripped = dir.join("gangway-stripped");
        let status = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&built)
            .status()
            .context("running strip (binutils)")?;
        if !status.success() {
            bail!("strip failed");
        }
        Ok((
            std::fs::metadata(&built)?.len(),
            std::fs::metadata(&stripped)?.len(),
        ))
    };
    let without = size(&["--no-default-features", "--features", "admin,store,quota"])?;
    let with = size(&[])?;
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let line = |what: &str, with: u64, without: u64| {
        format!(
            "{what}: {:.1} MB with the lambda feature, {:.1} MB without (+{:.1} MB, {:.0}%).",
            mb(with),
            mb(without),
            mb(with) - mb(without),
            (with as f64 / without as f64 - 1.0) * 100.0
        )
    };
    Ok(format!(
        "{}\n{}",
        line("Release binary as built (line tables)", with.0, without.0),
        line("Stripped", with.1, without.1)
    ))
}

/// Wall time of a clean release build with and without the `lambda` feature, each in a
/// fresh target directory.
fn clean_build_times(root: &Path, dir: &Path) -> Result<String> {
    let mut out = String::from("Clean release builds (fresh target directory each, this machine):");
    for (label, features) in [
        ("with lambda", &[][..]),
        (
            "without lambda",
            &["--no-default-features", "--features", "admin,store,quota"][..],
        ),
    ] {
        let target = dir.join(format!("target-{}", label.replace(' ', "-")));
        let started = Instant::now();
        let status = crate::cargo_command()
            .args(["build", "--release", "-p", "gangway", "--target-dir"])
            .arg(&target)
            .args(features)
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!("clean build {label} failed");
        }
        let _ = write!(out, " {label} {:.0} s;", started.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&target);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_banner;

    #[test]
    fn the_doubles_banner_gives_its_port_and_credentials() {
        let d = parse_banner("listening on 127.0.0.1:4567 region us-east-1 key AKID secret a/b\n")
            .expect("parses");
        assert_eq!(
            (d.port, d.region.as_str(), d.key.as_str(), d.secret.as_str()),
            (4567, "us-east-1", "AKID", "a/b")
        );
        assert!(parse_banner("something else").is_err());
    }
}

//! Processes under test: starting them pinned to a core, stopping them (only the ones this
//! program started, by pid), and reading what Linux says about them — resident memory, its
//! peak, CPU time — from `/proc`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    /// Spawns `cmd` with stdout piped and waits for a stdout line starting with `ready_prefix`;
    /// returns the process and the rest of that line.
    pub fn spawn_until_line(name: &str, mut cmd: Command, ready_prefix: &str, timeout: Duration) -> anyhow::Result<(Proc, String)> {
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = ready_prefix.to_owned();
        // Keeps draining stdout after the ready line so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let proc = Proc { name: name.to_owned(), child };
        let rest = rx.recv_timeout(timeout).map_err(|_| anyhow::anyhow!("{name} did not print {ready_prefix:?} in {timeout:?}"))?;
        Ok((proc, rest))
    }

    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Proc { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{} (pid {}) did not stop on SIGTERM; killing it", self.name, self.pid());
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid this program started; no memory is passed.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// `taskset -c CPU` prefix, so each process under test gets its own core.
pub fn pinned(cpu: usize, program: &str) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu.to_string()).arg(program);
    cmd
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Resident memory now, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_field(pid, "VmRSS:").map(|k| k as f64 / 1024.0)
}

/// Peak resident memory since start or the last [`reset_peak`], MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_field(pid, "VmHWM:").map(|k| k as f64 / 1024.0)
}

/// Resets the peak (`VmHWM`) to the current resident size (Linux `clear_refs` value 5).
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("cannot reset the peak RSS of {pid}"))
}

/// User + system CPU time of a process (all its threads), seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Direct children of a process (nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Runs a command to completion; returns its status, wall time and peak RSS (MiB) from wait4.
pub fn run_measured(mut cmd: Command) -> anyhow::Result<(ExitStatus, Duration, f64)> {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let child = cmd.spawn().context("cannot start the command")?;
    let pid = i32::try_from(child.id()).context("pid")?;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; wait4 writes into both locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(r == pid, "wait4 failed: {}", std::io::Error::last_os_error());
    // The child is reaped; dropping `child` without wait is fine.
    drop(child);
    Ok((ExitStatus::from_raw(status), wall, usage.ru_maxrss as f64 / 1024.0))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

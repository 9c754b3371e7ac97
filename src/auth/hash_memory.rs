//! Whether argon2's workspaces fit in the memory latchd may use. Under a
//! burst of logins every hashing thread holds one workspace of
//! `memory_kib` at once. Parameters asking for more than the machine, the
//! cgroup (systemd's `MemoryMax=`) or the address-space limit (`ulimit -v`,
//! `LimitAS=`) allows pass every rule of the file and then get latchd
//! killed, or aborted by a failed allocation, at the first busy minute. So
//! `check-config`, a start and a reload refuse them up front.

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};

use crate::config::Argon2Params;

const MIB: u64 = 1024 * 1024;
/// Room for the rest of latchd and the system beside the workspaces: the
/// daemon peaks well under this without them (BENCHMARKS.md, memory).
const HEADROOM: u64 = 128 * MIB;

/// The threads that hash passwords: one per core latchd may use.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `Err` with a reason when `params` would need more memory at once than
/// the tightest limit on this process allows.
pub fn workspaces_fit(params: Argon2Params) -> Result<(), String> {
    let threads = hashing_threads() as u64;
    let each = u64::from(params.memory_kib) * 1024;
    let need = threads * each;
    let tightest = limits().into_iter().min_by_key(|(bytes, _)| *bytes);
    match tightest {
        Some((limit, what)) if need + HEADROOM > limit => Err(format!(
            "{threads} hashing thread(s) × {} MiB = {} MiB at once, but {what} is {} MiB and latchd \
             needs {} MiB of it besides; lower memory_kib (the default is 19456)",
            each / MIB,
            need / MIB,
            limit / MIB,
            HEADROOM / MIB,
        )),
        _ => Ok(()),
    }
}

/// Every limit on this process's memory that can be read, in bytes.
fn limits() -> Vec<(u64, &'static str)> {
    let mut found = Vec::new();
    if let Some(total) = std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(mem_total) {
        found.push((total, "this machine's memory"));
    }
    if let Some(cgroup) = cgroup_limit() {
        found.push((cgroup, "the cgroup's memory limit (MemoryMax=)"));
    }
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_AS)
        && soft != RLIM_INFINITY
    {
        found.push((soft, "the address-space limit (ulimit -v, LimitAS=)"));
    }
    found
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1's
/// `memory.limit_in_bytes`), when one is set and readable.
fn cgroup_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (v2, v1) = cgroup_paths(&membership);
    let mut files = Vec::new();
    if let Some(path) = v2 {
        files.push(format!("/sys/fs/cgroup{path}/memory.max"));
        files.push(format!("/sys/fs/cgroup/unified{path}/memory.max"));
    }
    if let Some(path) = v1 {
        files.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
    }
    // Inside a container the cgroup's own folder is mounted as the root.
    files.push("/sys/fs/cgroup/memory.max".into());
    files.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    files.iter().find_map(|f| std::fs::read_to_string(f).ok()).as_deref().and_then(limit_value)
}

/// The v2 path (`0::/x`) and the v1 memory controller's path (`N:memory:/x`)
/// from `/proc/self/cgroup`.
fn cgroup_paths(membership: &str) -> (Option<&str>, Option<&str>) {
    let (mut v2, mut v1) = (None, None);
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.trim_end_matches('/'));
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.trim_end_matches('/'));
        }
    }
    (v2, v1)
}

/// A limit file's value: `max` (v2) means none; v1 writes "none" as a
/// number near 2^63, which is no tighter than the machine anyway.
fn limit_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_the_kernels_files() {
        let meminfo = "MemTotal:        2014592 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total(meminfo), Some(2_014_592 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("536870912\n"), Some(512 * MIB));
        let v2 = "0::/system.slice/latchd.service\n";
        assert_eq!(cgroup_paths(v2), (Some("/system.slice/latchd.service"), None));
        let hybrid = "4:memory:/process_api/ab\n3:cpu,cpuacct:/\n0::/\n";
        assert_eq!(cgroup_paths(hybrid), (Some(""), Some("/process_api/ab")));
    }

    #[test]
    fn the_default_parameters_fit_and_a_machines_worth_does_not() {
        assert_eq!(workspaces_fit(Argon2Params::default()), Ok(()));
        let total = limits().into_iter().map(|(b, _)| b).min().unwrap();
        let too_much = Argon2Params { memory_kib: (total / 1024) as u32, ..Argon2Params::default() };
        let refused = workspaces_fit(too_much).unwrap_err();
        assert!(refused.contains("MiB at once, but "), "{refused}");
    }
}

//! Rule matching, rule file errors and the default rules.

use std::collections::HashSet;
use std::path::Path;

use schemas::{ChangeKind, ContainerInfo, RawPath, Severity};

use super::*;

fn rules(yaml: &str) -> RuleSet {
    let rules = file::parse(Path::new("test.yaml"), yaml, &mut HashSet::new()).unwrap();
    let user_rules = rules.len();
    RuleSet { rules, user_rules }
}

fn errors(yaml: &str) -> Vec<RuleError> {
    match file::parse(Path::new("bad.yaml"), yaml, &mut HashSet::new()) {
        Ok(_) => panic!("rules should be refused"),
        Err(errors) => errors,
    }
}

fn container(namespace: &str) -> ContainerInfo {
    ContainerInfo {
        id: "c1".into(),
        name: Some("web".into()),
        image: Some("registry.local/shop/web:1.4".into()),
        namespace: Some(namespace.into()),
        labels: [("app".to_owned(), "shop".to_owned())].into(),
        ..ContainerInfo::default()
    }
}

fn verdict(set: &RuleSet, path: &str, change: ChangeKind, c: Option<&ContainerInfo>) -> Verdict {
    set.evaluate(&Target { path: &RawPath::from(path), change, container: c })
}

#[test]
fn the_first_matching_rule_decides() {
    let set = rules(
        "rules:\n\
         - {id: quiet-cfg, paths: [/etc/app/cache.conf], action: ignore}\n\
         - {id: app-cfg, paths: [/etc/app/**], severity: high}\n",
    );
    let c = container("shop");
    let quiet = verdict(&set, "/etc/app/cache.conf", ChangeKind::Modified, Some(&c));
    assert_eq!(quiet.rule, "quiet-cfg");
    assert_eq!(quiet.action, Action::Ignore);
    let loud = verdict(&set, "/etc/app/db/main.conf", ChangeKind::Modified, Some(&c));
    assert_eq!((loud.rule.as_str(), loud.severity), ("app-cfg", Severity::High));
}

#[test]
fn single_star_stays_in_one_directory_and_relative_globs_match_at_any_depth() {
    let set = rules(
        "rules:\n\
         - {id: top, paths: [/etc/*.conf], severity: low}\n\
         - {id: jars, paths: ['*.jar'], severity: high}\n",
    );
    assert_eq!(verdict(&set, "/etc/a.conf", ChangeKind::Modified, None).rule, "top");
    assert_eq!(verdict(&set, "/etc/x/a.conf", ChangeKind::Modified, None).rule, HOST_FALLBACK);
    assert_eq!(verdict(&set, "/srv/lib/deep/app.jar", ChangeKind::Created, None).rule, "jars");
}

#[test]
fn change_kinds_and_scope_narrow_a_rule() {
    let set = rules(
        "rules:\n\
         - {id: deletions, paths: [/data/**], changes: [deleted], severity: critical}\n\
         - {id: in-containers, paths: [/data/**], scope: container, severity: low}\n",
    );
    let c = container("shop");
    assert_eq!(verdict(&set, "/data/x", ChangeKind::Deleted, None).rule, "deletions");
    assert_eq!(verdict(&set, "/data/x", ChangeKind::Modified, None).rule, HOST_FALLBACK);
    assert_eq!(verdict(&set, "/data/x", ChangeKind::Modified, Some(&c)).rule, "in-containers");
}

#[test]
fn container_selectors_match_image_name_namespace_and_labels() {
    let set = rules(
        "rules:\n\
         - id: shop\n\
           \x20 containers: {images: ['registry.local/shop/*'], namespaces: [shop], labels: {app: sh*}}\n\
           \x20 severity: critical\n",
    );
    let shop = container("shop");
    let other = container("dev");
    assert_eq!(verdict(&set, "/x", ChangeKind::Modified, Some(&shop)).rule, "shop");
    assert_eq!(verdict(&set, "/x", ChangeKind::Modified, Some(&other)).rule, CONTAINER_FALLBACK);
    // A selector never matches the host.
    assert_eq!(verdict(&set, "/x", ChangeKind::Modified, None).rule, HOST_FALLBACK);
}

#[test]
fn exceptions_pass_a_change_on_to_later_rules() {
    let set = rules(
        "rules:\n\
         - id: etc\n\
           \x20 paths: [/etc/**]\n\
           \x20 severity: high\n\
           \x20 except:\n\
           \x20   - paths: [/etc/resolv.conf]\n\
           \x20   - containers: {namespaces: [dev]}\n\
         - {id: rest, severity: low}\n",
    );
    let shop = container("shop");
    let dev = container("dev");
    assert_eq!(verdict(&set, "/etc/passwd", ChangeKind::Modified, Some(&shop)).rule, "etc");
    assert_eq!(verdict(&set, "/etc/resolv.conf", ChangeKind::Modified, Some(&shop)).rule, "rest");
    assert_eq!(verdict(&set, "/etc/passwd", ChangeKind::Modified, Some(&dev)).rule, "rest");
}

#[test]
fn unknown_fields_are_refused_with_line_and_column() {
    let found = errors("rules:\n  - id: a\n    severity: high\n    pathz: [/etc]\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].position.map(|(line, _)| line), Some(4), "{}", found[0]);
    assert!(found[0].message.contains("pathz"), "{}", found[0]);
    assert!(found[0].to_string().starts_with("bad.yaml:4:"), "{}", found[0]);
}

#[test]
fn bad_values_are_reported_where_they_are_written() {
    let found = errors(
        "rules:\n\
         - id: a\n\
         \x20 paths: ['/etc/[']\n\
         \x20 severity: high\n\
         - id: a\n\
         \x20 action: ignore\n\
         - id: b\n\
         \x20 paths: [/x]\n",
    );
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{text:?}");
    assert!(text[0].starts_with("bad.yaml:3:11: invalid path glob"), "{text:?}");
    assert!(text[1].starts_with("bad.yaml:5:7: duplicate rule id"), "{text:?}");
    assert!(text[2].contains("has no severity"), "{text:?}");
}

#[test]
fn an_unknown_severity_is_a_yaml_error_with_a_position() {
    let found = errors("rules:\n  - id: a\n    severity: urgent\n");
    assert_eq!(found[0].position.map(|(line, _)| line), Some(3), "{}", found[0]);
}

#[test]
fn the_default_rules_load_and_tag_critical_files() {
    let set = RuleSet::defaults().unwrap();
    let c = container("shop");
    let cases = [
        ("/etc/ld.so.preload", "dynamic-loader-changed", Severity::Critical),
        ("/etc/passwd", "identity-files-changed", Severity::High),
        ("/root/.ssh/authorized_keys", "identity-files-changed", Severity::High),
        ("/etc/sudoers.d/app", "identity-files-changed", Severity::High),
        ("/etc/cron.d/backup", "scheduled-tasks-changed", Severity::High),
        ("/usr/bin/ls", "system-binaries-changed", Severity::High),
        ("/app/app.jar", "application-artifacts-changed", Severity::High),
        ("/app/config/application.properties", "application-artifacts-changed", Severity::High),
        ("/app/templates/index.html", "application-artifacts-changed", Severity::High),
    ];
    for (path, rule, severity) in cases {
        let found = verdict(&set, path, ChangeKind::Modified, Some(&c));
        assert_eq!((found.rule.as_str(), found.severity), (rule, severity), "{path}");
        assert!(found.controls.contains(&"PCI-DSS-4.0:11.5.2".to_owned()), "{path}");
        assert!(found.controls.contains(&"NIST-800-53:SI-7".to_owned()), "{path}");
    }
}

#[test]
fn the_default_rules_are_quiet_for_container_noise_but_not_for_watched_host_paths() {
    let set = RuleSet::defaults().unwrap();
    let c = container("shop");
    for path in ["/tmp/x", "/var/log/app/out.log", "/var/cache/apt/a", "/app/__pycache__/m.pyc"] {
        let found = verdict(&set, path, ChangeKind::Modified, Some(&c));
        assert_eq!(found.action, Action::Ignore, "{path}");
    }
    let host = verdict(&set, "/tmp/.tmpAbc/passwd", ChangeKind::Modified, None);
    assert_eq!((host.rule.as_str(), host.severity), (HOST_FALLBACK, Severity::High));
}

#[test]
fn user_rules_come_before_the_defaults_and_may_not_reuse_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = "rules:\n  - {id: quiet-passwd, paths: [/etc/passwd], action: ignore}\n";
    std::fs::write(dir.path().join("10-site.yaml"), quiet).unwrap();
    let set = RuleSet::load(Some(dir.path())).unwrap();
    assert_eq!(verdict(&set, "/etc/passwd", ChangeKind::Modified, None).action, Action::Ignore);

    let clash = "rules:\n  - {id: identity-files-changed, severity: low}\n";
    std::fs::write(dir.path().join("20-clash.yml"), clash).unwrap();
    let RuleErrors(found) = RuleSet::load(Some(dir.path())).err().unwrap();
    assert!(found[0].message.contains("duplicate rule id"), "{:?}", found);
}

#[test]
fn check_reports_a_reused_default_id_in_the_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.yaml");
    std::fs::write(&file, "rules:\n  - {id: writable-noise, action: ignore}\n").unwrap();
    let RuleErrors(found) = check(&file).unwrap_err();
    assert_eq!(found[0].file, file);
    assert_eq!(found[0].position, Some((2, 10)), "{}", found[0]);
    std::fs::write(&file, "rules:\n  - {id: mine, action: ignore}\n").unwrap();
    assert_eq!(check(dir.path()).unwrap(), 1);
}

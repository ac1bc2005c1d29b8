//! A hostile checkout gets nothing: a path out of it is refused naming the
//! path, a file past a limit is refused naming the limit, and the rest of
//! the checkout still loads.

use std::os::unix::fs::symlink;
use std::path::Path;

use flux_manifests::{Checkout, LoadError, LoadOptions};
use flux_testkit::hostile::{Case, GOOD, GOOD_CONFIG, Outside, SECRET, SECRET_NAME};

fn load_case(case: Case) -> (Checkout, tempfile::TempDir, Outside) {
    let outside = Outside::new();
    let repo = tempfile::tempdir().expect("a temporary folder");
    case.fill(repo.path(), &outside);
    let paths: Vec<_> = case
        .git_paths()
        .iter()
        .map(|p| match *p {
            "." => repo.path().to_path_buf(),
            p => repo.path().join(p),
        })
        .collect();
    let options = LoadOptions {
        root: Some(repo.path().to_path_buf()),
        ..LoadOptions::default()
    };
    (Checkout::load(&paths, options), repo, outside)
}

fn ids(checkout: &Checkout) -> Vec<String> {
    checkout
        .resources
        .iter()
        .map(|r| r.id.to_string())
        .collect()
}

#[test]
fn every_hostile_case_is_refused_by_name_and_the_rest_still_loads() {
    for case in Case::ALL {
        let (checkout, repo, outside) = load_case(case);
        let messages: Vec<String> = checkout.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 1, "{case:?}: {messages:?}");
        let message = messages[0].replace(&format!("{}/", repo.path().display()), "");
        assert_eq!(message, case.error(), "{case:?}");
        assert_eq!(
            checkout.errors[0].path(),
            repo.path().join(case.refused()),
            "{case:?}"
        );
        assert!(!message.contains(SECRET), "{case:?}: {message}");
        assert!(
            !message.contains(&*outside.dir().to_string_lossy()),
            "{case:?}: {message}"
        );
        assert_eq!(
            ids(&checkout),
            [GOOD.to_string(), format!("default:configmap/{GOOD_CONFIG}")],
            "{case:?}"
        );
        assert!(checkout.workload(&GOOD.parse().unwrap()).is_some());
        // A refused file is no manifest file of the checkout: nothing reads it again.
        assert!(
            checkout
                .files
                .iter()
                .all(|f| f.path.starts_with(repo.path().join("apps"))),
            "{case:?}: {:?}",
            checkout.files
        );
        assert!(!ids(&checkout).iter().any(|id| id.contains(SECRET_NAME)));
    }
}

#[test]
fn a_refused_symlink_says_nothing_of_where_it_leads_even_when_nothing_is_there() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    symlink("/no/such/file", repo.path().join("gone.yaml")).expect("a link");
    symlink("/etc/hostname", repo.path().join("there.yaml")).expect("a link");
    let checkout = Checkout::load(&[repo.path()], LoadOptions::default());
    let messages: Vec<String> = checkout.errors.iter().map(|e| e.to_string()).collect();
    let prefix = repo.path().display().to_string();
    assert_eq!(
        messages,
        [
            format!("{prefix}/gone.yaml: refused: it is a symlink out of the checkout"),
            format!("{prefix}/there.yaml: refused: it is a symlink out of the checkout"),
        ]
    );
}

#[test]
fn symlinks_that_stay_inside_the_checkout_keep_working() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(repo.path().join("base")).expect("a folder");
    std::fs::write(
        repo.path().join("base/web.yaml"),
        flux_testkit::hostile::good_manifests(),
    )
    .expect("a file");
    std::fs::create_dir_all(repo.path().join("env")).expect("a folder");
    symlink("../base", repo.path().join("env/linked")).expect("a link");
    let options = LoadOptions {
        root: Some(repo.path().to_path_buf()),
        ..LoadOptions::default()
    };
    // Through the linked folder only, so each resource is read once.
    let checkout = Checkout::load(&[repo.path().join("env")], options);
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert_eq!(
        checkout.files[0].path,
        repo.path().join("env/linked/web.yaml")
    );
    assert!(checkout.workload(&GOOD.parse().unwrap()).is_some());
}

#[test]
fn paths_given_out_of_the_root_are_refused() {
    let outside = Outside::new();
    let repo = tempfile::tempdir().expect("a temporary folder");
    Case::GitPathOut.fill(repo.path(), &outside);
    let options = LoadOptions {
        root: Some(repo.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let given = [
        repo.path().join("../x"),
        outside.dir().to_path_buf(),
        repo.path().join("apps"),
    ];
    let checkout = Checkout::load(&given, options);
    let refused: Vec<_> = checkout
        .errors
        .iter()
        .map(|e| match e {
            LoadError::Outside { path, .. } => path.clone(),
            other => panic!("not refused as outside: {other}"),
        })
        .collect();
    assert_eq!(refused, given[..2]);
    assert_eq!(checkout.resources.len(), 2);
}

#[test]
fn the_size_limit_is_checked_before_reading_and_a_file_at_it_loads() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    let text = flux_testkit::hostile::good_manifests();
    std::fs::write(repo.path().join("good.yaml"), &text).expect("a file");
    // A sparse gigabyte: refused by its size, never read.
    let huge = std::fs::File::create(repo.path().join("huge.yaml")).expect("a file");
    huge.set_len(1 << 30).expect("a sparse file");
    let options = |limit| LoadOptions {
        max_file_bytes: limit,
        ..LoadOptions::default()
    };
    let checkout = Checkout::load(&[repo.path()], options(text.len() as u64));
    let messages: Vec<String> = checkout.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        [format!(
            "{}: refused: 1073741824 bytes, more than the limit of {} bytes",
            repo.path().join("huge.yaml").display(),
            text.len()
        )]
    );
    assert_eq!(checkout.resources.len(), 2);
    let checkout = Checkout::load(&[repo.path()], options(text.len() as u64 - 1));
    assert_eq!(checkout.resources.len(), 0);
    assert_eq!(checkout.errors.len(), 2);
}

#[test]
fn a_special_file_is_read_no_further_than_the_limit() {
    // /dev/zero has no size and no end: only the read bound stops it.
    let repo = tempfile::tempdir().expect("a temporary folder");
    symlink("/dev/zero", repo.path().join("zero.yaml")).expect("a link");
    let options = LoadOptions {
        root: Some("/".into()),
        max_file_bytes: 1 << 20,
        ..LoadOptions::default()
    };
    let checkout = Checkout::load(&[repo.path()], options);
    let message = checkout.errors[0].to_string();
    assert!(
        message.ends_with("refused: 1048577 bytes, more than the limit of 1048576 bytes"),
        "{message}"
    );
}

#[test]
fn limits_can_be_raised_for_a_repo_that_needs_it() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    let path = repo.path().join("many.yaml");
    std::fs::write(&path, flux_testkit::hostile::documents(2_000)).expect("a file");
    let default = Checkout::load(&[repo.path()], LoadOptions::default());
    assert!(
        matches!(default.errors[..], [LoadError::Limit { line: 2050, .. }]),
        "{:?}",
        default.errors
    );
    let mut options = LoadOptions::default();
    options.yaml.max_documents = 2_000;
    let raised = Checkout::load(&[repo.path()], options);
    assert!(raised.errors.is_empty(), "{:?}", raised.errors);
    assert_eq!(raised.files.len(), 1);
    assert!(Path::new(&raised.files[0].path).ends_with("many.yaml"));
}

#[test]
fn a_symlink_out_of_a_helm_chart_is_not_reported_since_the_chart_is_not_read() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(repo.path().join("chart/templates")).expect("a folder");
    std::fs::write(repo.path().join("chart/Chart.yaml"), "name: c\n").expect("a file");
    symlink(
        "/etc/hostname",
        repo.path().join("chart/templates/out.yaml"),
    )
    .expect("a link");
    symlink("/etc/hostname", repo.path().join("chart/out.yaml")).expect("a link");
    let checkout = Checkout::load(&[repo.path()], LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
}

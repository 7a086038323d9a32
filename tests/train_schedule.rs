//! Learning-rate schedules and the collapse checks' arithmetic, on the CPU.

use unet_wgpu::train::health::{
    prior_entropy, Collapse, HealthMonitor, Verdict, GRACE_STEPS, PRIOR_PATIENCE, WINDOW,
};
use unet_wgpu::train::{warmup_factor, LrSchedule, Schedule};

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-7 * b.abs().max(1e-3)
}

#[test]
fn warmup_ramps_the_rate_linearly() {
    assert_eq!(warmup_factor(0, 4), 0.25);
    assert_eq!(warmup_factor(1, 4), 0.5);
    assert_eq!(warmup_factor(3, 4), 1.0);
    assert_eq!(warmup_factor(9, 4), 1.0);
    assert_eq!(warmup_factor(0, 0), 1.0, "no warm-up");
}

#[test]
fn a_step_schedule_changes_rate_at_its_fractions() {
    let (schedule, first) = Schedule::parse("0.001,0.0003@0.57,0.0001@0.85").unwrap();
    assert_eq!(first, Some(0.001));
    let plan = LrSchedule {
        schedule,
        planned_steps: 1000,
        warmup: 0,
    };
    let at = |step| plan.lr_at(0.001, step);
    assert_eq!(at(0), 0.001);
    assert_eq!(at(569), 0.001);
    assert_eq!(at(570), 0.0003);
    assert_eq!(at(849), 0.0003);
    assert_eq!(at(850), 0.0001);
    // Beyond the planned steps (a run extended on resume) the last rate holds.
    assert_eq!(at(5000), 0.0001);
    // Its text reads back as the same schedule.
    let text = plan.describe(0.001);
    assert_eq!(text, "0.001,0.0003@0.57,0.0001@0.85");
    assert_eq!(Schedule::parse(&text).unwrap().0, plan.schedule);
}

#[test]
fn step_numbers_start_phases_at_those_steps() {
    let (schedule, _) = Schedule::parse("0.001,0.0003@4990,0.0001@7390").unwrap();
    let plan = LrSchedule {
        schedule,
        planned_steps: 8686,
        warmup: 1000,
    };
    assert_eq!(plan.lr_at(0.001, 0), 0.001 * (1.0 / 1000.0));
    assert_eq!(plan.lr_at(0.001, 4989), 0.001);
    assert_eq!(plan.lr_at(0.001, 4990), 0.0003);
    assert_eq!(plan.lr_at(0.001, 7389), 0.0003);
    assert_eq!(plan.lr_at(0.001, 7390), 0.0001);
    assert_eq!(plan.describe(0.001), "0.001,0.0003@4990,0.0001@7390");
}

#[test]
fn cosine_decays_from_the_base_rate_to_its_end_and_warmup_multiplies() {
    let (schedule, first) = Schedule::parse("cosine:0.0001").unwrap();
    assert_eq!(first, None, "cosine starts at --lr");
    let plan = LrSchedule {
        schedule,
        planned_steps: 100,
        warmup: 10,
    };
    assert!(close(plan.lr_at(0.001, 0), 0.001 * 0.1), "warm-up step 0");
    assert!(close(plan.lr_at(0.001, 50), 0.00055), "half way: the mean");
    assert!(close(plan.lr_at(0.001, 100), 0.0001), "the end");
    assert!(close(plan.lr_at(0.001, 400), 0.0001), "after the end");
    let cos =
        |s: u64| 0.0001 + 0.0009 * (1.0 + (std::f64::consts::PI * s as f64 / 100.0).cos()) / 2.0;
    for step in [10, 25, 75, 99] {
        assert!(
            close(plan.lr_at(0.001, step), cos(step) as f32),
            "step {step}"
        );
    }
    assert_eq!(
        Schedule::parse("cosine").unwrap().0,
        Schedule::Cosine { end: 0.0 }
    );
    assert_eq!(
        Schedule::parse("constant").unwrap(),
        (Schedule::Constant, None)
    );
}

#[test]
fn bad_schedules_are_one_line_errors_that_show_the_forms() {
    for bad in [
        "",
        "fast",
        "0.001,0.0003",
        "0.001,0.0003@1.5",
        "0.001,1@0.5,2@0.4",
        "0.001,1@0.5,2@100",
        "0.001,1@2.5",
        "x,1@0.5",
        "cosine:-1",
        "cosinex",
    ] {
        let message = Schedule::parse(bad).unwrap_err().to_string();
        assert!(
            message.contains("--schedule") && message.contains("cosine"),
            "{bad:?}: {message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn a_checkpoints_schedule_metadata_reads_back() {
    let plan = LrSchedule {
        schedule: Schedule::parse("0.01,0.001@0.5").unwrap().0,
        planned_steps: 300,
        warmup: 20,
    };
    let meta: std::collections::HashMap<_, _> = plan
        .to_metadata(0.01)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let back = LrSchedule::from_metadata(|key| meta.get(key).cloned()).unwrap();
    assert_eq!(back, plan);
    // A checkpoint from before schedules: constant, no warm-up.
    assert_eq!(
        LrSchedule::from_metadata(|_| None).unwrap(),
        LrSchedule::default()
    );
}

#[test]
fn the_prior_entropy_is_the_loss_of_the_best_constant_prediction() {
    // Three pixels of class 0 with weight 1 and one of class 1 with weight 3: W_0 = W_1 = 3,
    // so the best constant prediction is (1/2, 1/2) and its loss (1/4) * 6 ln 2.
    let labels = [0.0, 0.0, 0.0, 1.0];
    let weights = [1.0, 1.0, 1.0, 3.0];
    let want = 6.0 * 2f64.ln() / 4.0;
    assert!((prior_entropy(&labels, &weights, 2) - want).abs() < 1e-12);
    // No constant prediction does better: sweep p.
    for i in 1..100 {
        let p = i as f64 / 100.0;
        let loss = -(3.0 * (1.0 - p).ln() + 3.0 * p.ln()) / 4.0;
        assert!(loss >= want - 1e-12);
    }
    // One class only: a constant prediction is perfect.
    assert_eq!(prior_entropy(&[1.0; 5], &[2.0; 5], 2), 0.0);
}

#[test]
fn the_monitor_confirms_a_collapse_and_forgives_a_bad_tile() {
    let dead = || Some(vec!["enc0.conv1".to_string()]);
    // Dead on two checks, alive on the third: not collapsed.
    let mut monitor = HealthMonitor::default();
    assert_eq!(monitor.record(20, 0.5, 0.7, dead()), None);
    assert_eq!(monitor.record(40, 0.5, 0.7, dead()), None);
    assert_eq!(monitor.record(60, 0.5, 0.7, Some(vec![])), None);
    assert_eq!(monitor.record(80, 0.5, 0.7, dead()), None);
    assert_eq!(monitor.record(100, 0.5, 0.7, dead()), None);
    assert_eq!(
        monitor.record(120, 0.5, 0.7, dead()),
        Some(Verdict::Collapsed(Collapse::DeadLayers(vec![
            "enc0.conv1".into()
        ])))
    );

    // A loss at the prior counts only after the grace steps and a full window: the third
    // check after them warns, and PRIOR_PATIENCE steps later, still at the prior, the
    // run is stopped.
    let mut monitor = HealthMonitor::default();
    let mut verdicts = Vec::new();
    for step in 1..=GRACE_STEPS + PRIOR_PATIENCE + 100 {
        let check = (step % 20 == 0).then(Vec::new);
        if let Some(verdict) = monitor.record(step, 0.70, 0.70, check) {
            verdicts.push((step, verdict));
        }
    }
    let warned = GRACE_STEPS + 40;
    assert!(WINDOW as u64 <= GRACE_STEPS);
    assert!(
        matches!(verdicts[0], (step, Verdict::Warning(Collapse::LossAtPrior { .. })) if step == warned),
        "{verdicts:?}"
    );
    assert!(
        matches!(verdicts[1], (step, Verdict::Collapsed(Collapse::LossAtPrior { .. }))
            if step == warned + PRIOR_PATIENCE),
        "{verdicts:?}"
    );

    // A network that starts to learn after the warning is not stopped, and a later
    // stretch at the prior is warned about afresh.
    let mut monitor = HealthMonitor::default();
    let mut verdicts = Vec::new();
    for step in 1..=GRACE_STEPS + 2 * PRIOR_PATIENCE {
        let check = (step % 20 == 0).then(Vec::new);
        let learning = (warned + 100..warned + 300).contains(&step);
        let loss = if learning { 0.3 } else { 0.7 };
        if let Some(verdict) = monitor.record(step, loss, 0.70, check) {
            verdicts.push(verdict);
        }
    }
    assert!(
        verdicts.len() >= 2 && matches!(verdicts[1], Verdict::Warning(_)),
        "{verdicts:?}"
    );

    // A loss well below the prior is healthy.
    let mut monitor = HealthMonitor::default();
    for step in 1..=2 * GRACE_STEPS {
        let check = (step % 20 == 0).then(Vec::new);
        assert_eq!(monitor.record(step, 0.3, 0.7, check), None);
    }
}

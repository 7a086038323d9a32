//! The metrics on small hand-drawn maps whose answers are worked out by hand in the comments.
//!
//! Maps are drawn as rows of text: `#` = foreground (cell interior), `.` = background
//! (membrane). N below is the number of pixels of the map.

use unet_wgpu::metrics::{
    adapted_rand, adapted_rand_cremi, binary_truth, connected_components, default_thresholds,
    evaluate, evaluate_ignoring, iou, iou_ignoring, is_simple_point, pixel_error,
    pixel_error_ignoring, rand_error, rand_error_cremi, rand_error_cremi_ignoring,
    rand_error_ignoring, scores_at_ignoring, sweep_image, warp_truth, warping_error,
    warping_error_at, warping_error_at_ignoring, BinaryMap, Connectivity, LabelMap, MetricsError,
    ProbabilityMap,
};

const EPS: f64 = 1e-9;

fn binary(rows: &[&str]) -> BinaryMap {
    let width = rows[0].len();
    let pixels: Vec<bool> = rows
        .iter()
        .flat_map(|row| row.chars().map(|c| c == '#'))
        .collect();
    BinaryMap::new(width, rows.len(), pixels).unwrap()
}

fn labels(width: usize, values: &[u32]) -> LabelMap {
    LabelMap::new(width, values.len() / width, values.to_vec()).unwrap()
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= EPS,
        "got {actual}, expected {expected}"
    );
}

// ---------------------------------------------------------------------------------------------
// Maps and connected components

#[test]
fn map_rejects_wrong_pixel_count() {
    let err = BinaryMap::new(3, 2, vec![true; 5]).unwrap_err();
    assert_eq!(
        err,
        MetricsError::WrongPixelCount {
            width: 3,
            height: 2,
            expected: 6,
            got: 5
        }
    );
}

#[test]
fn u8_labels_255_is_foreground_and_threshold_is_strict() {
    let truth = BinaryMap::from_u8_labels(3, 1, &[255, 0, 255]).unwrap();
    assert_eq!(truth.pixels(), &[true, false, true]);
    let prob = ProbabilityMap::new(3, 1, vec![0.5, 0.50001, 0.2]).unwrap();
    assert_eq!(prob.threshold(0.5).pixels(), &[false, true, false]);
}

#[test]
fn connected_components_four_versus_eight() {
    // A diagonal step: two cells with 4-connectivity, one with 8-connectivity.
    let map = binary(&["#..", ".#.", "..#"]);
    let four = connected_components(&map, Connectivity::Four);
    assert_eq!(four.pixels(), &[1, 0, 0, 0, 2, 0, 0, 0, 3]);
    let eight = connected_components(&map, Connectivity::Eight);
    assert_eq!(eight.pixels(), &[1, 0, 0, 0, 1, 0, 0, 0, 1]);
    // A U shape is one component: the flood fill goes around the bend.
    let u_shape = connected_components(&binary(&["#.#", "#.#", "###"]), Connectivity::Four);
    assert_eq!(u_shape.pixels(), &[1, 0, 1, 1, 0, 1, 1, 1, 1]);
}

// ---------------------------------------------------------------------------------------------
// Pixel error and IoU

#[test]
fn pixel_error_by_hand() {
    // Disagreements at (1,0) and (2,1): 2 of 6 pixels -> 1/3.
    let truth = binary(&["##.", ".#."]);
    let pred = binary(&["#..", ".##"]);
    assert_close(pixel_error(&pred, &truth).unwrap(), 2.0 / 6.0);
    assert_close(pixel_error(&truth, &truth).unwrap(), 0.0);
}

#[test]
fn pixel_error_rejects_size_mismatch() {
    let err = pixel_error(&binary(&["##"]), &binary(&["#", "#"])).unwrap_err();
    assert_eq!(
        err,
        MetricsError::SizeMismatch {
            what: "prediction",
            width: 2,
            height: 1,
            truth_width: 1,
            truth_height: 2
        }
    );
}

#[test]
fn iou_by_hand() {
    // P = {1, 2}, G = {0, 1}: |P ∩ G| = 1, |P ∪ G| = 3 -> 1/3.
    assert_close(
        iou(&binary(&[".##."]), &binary(&["##.."])).unwrap(),
        1.0 / 3.0,
    );
    // P = {0}, G = {0, 1, 2, 3}: 1/4.
    assert_close(iou(&binary(&["#..."]), &binary(&["####"])).unwrap(), 0.25);
    // Both empty: defined as 1 (perfect agreement). One empty: 0.
    assert_close(iou(&binary(&["...."]), &binary(&["...."])).unwrap(), 1.0);
    assert_close(iou(&binary(&["...."]), &binary(&["#..."])).unwrap(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Adapted Rand error. Notation: n_ij contingency counts over truth-foreground pixels, N their
// number, t_i truth sizes, s_j prediction sizes;
// both = sum n_ij^2 - N, truth = sum t_i^2 - N, pred = sum s_j^2 - N,
// error = 1 - both / (truth / 2 + pred / 2), precision = both / pred, recall = both / truth.

#[test]
fn rand_error_of_identical_segmentations_is_zero() {
    let truth = binary(&["##.##", "##.##", ".....", "#####"]);
    let scores = adapted_rand(
        &connected_components(&truth, Connectivity::Four),
        &connected_components(&truth, Connectivity::Four),
    )
    .unwrap();
    assert_close(scores.error, 0.0);
    assert_close(scores.precision, 1.0);
    assert_close(scores.recall, 1.0);
}

#[test]
fn rand_error_of_a_split() {
    // One truth cell of 5 pixels, predicted as two cells of 2 cut by a membrane pixel.
    // Prediction segments over the truth foreground: A = 2, background (label 0) = 1, B = 2.
    // both = 2^2 + 1^2 + 2^2 - 5 = 4; truth = 5^2 - 5 = 20; pred = 4 + 1 + 4 - 5 = 4.
    // error = 1 - 4 / (10 + 2) = 2/3; precision = 4/4 = 1; recall = 4/20 = 0.2.
    let truth = connected_components(&binary(&["#####"]), Connectivity::Four);
    let pred = connected_components(&binary(&["##.##"]), Connectivity::Four);
    let scores = adapted_rand(&pred, &truth).unwrap();
    assert_close(scores.error, 2.0 / 3.0);
    assert_close(scores.precision, 1.0);
    assert_close(scores.recall, 0.2);
}

#[test]
fn rand_error_of_a_merge() {
    // Two truth cells of 2 pixels (the membrane between them is ignored), predicted as one.
    // n = [2, 2], N = 4: both = 4 + 4 - 4 = 4; truth = 4 + 4 - 4 = 4; pred = 4^2 - 4 = 12.
    // error = 1 - 4 / (2 + 6) = 1/2; precision = 4/12 = 1/3; recall = 4/4 = 1.
    let truth = connected_components(&binary(&["##.##"]), Connectivity::Four);
    let pred = connected_components(&binary(&["#####"]), Connectivity::Four);
    let scores = adapted_rand(&pred, &truth).unwrap();
    assert_close(scores.error, 0.5);
    assert_close(scores.precision, 1.0 / 3.0);
    assert_close(scores.recall, 1.0);
    assert_close(
        rand_error(&binary(&["#####"]), &binary(&["##.##"])).unwrap(),
        0.5,
    );
}

#[test]
fn rand_error_matches_skimage_on_its_issue_6485_example() {
    // scikit-image issue #6485: image_true = [3, 3, 4, 4], image_test = [1, 2, 2, 2] gives
    // adapted_rand_error = (0.6, 0.5, 0.333...). Our precision and recall are skimage's
    // recall and precision (see the module notes): both = 1 + 1 + 4 - 4 = 2,
    // truth = 4 + 4 - 4 = 4, pred = 1 + 9 - 4 = 6; error = 1 - 2/5 = 0.6.
    let scores = adapted_rand(&labels(4, &[1, 2, 2, 2]), &labels(4, &[3, 3, 4, 4])).unwrap();
    assert_close(scores.error, 0.6);
    assert_close(scores.precision, 1.0 / 3.0);
    assert_close(scores.recall, 0.5);
}

#[test]
fn rand_error_prediction_background_is_one_segment() {
    // Truth: one cell of 4. Prediction: foreground at 0 and 2, background at 1 and 3. As in
    // skimage, both background pixels share label 0: n = [1 (A), 2 (label 0), 1 (B)].
    // both = 1 + 4 + 1 - 4 = 2; truth = 16 - 4 = 12; pred = 1 + 4 + 1 - 4 = 2.
    // error = 1 - 2 / (6 + 1) = 5/7. (Were they singletons, both = 0 and the error 1.)
    let error = rand_error(&binary(&["#.#."]), &binary(&["####"])).unwrap();
    assert_close(error, 5.0 / 7.0);
}

// CREMI / SNEMI3D variant: predicted background is no segment. n = all pixels;
// sum_a = sum t_i^2, sum_b = sum_(j != 0) s_j^2 + c/n, sum_ab = sum_(j != 0) n_ij^2 + c/n,
// c = predicted-background pixels in the truth foreground; error = 1 - 2PR / (P + R).

#[test]
fn cremi_rand_error_of_identical_segmentations_is_zero() {
    let truth = connected_components(
        &binary(&["##.##", "##.##", ".....", "#####"]),
        Connectivity::Four,
    );
    let scores = adapted_rand_cremi(&truth, &truth).unwrap();
    assert_close(scores.error, 0.0);
}

#[test]
fn cremi_rand_error_of_a_split() {
    // n = 5, one truth cell of 5; prediction A = 2, background 1, B = 2.
    // sum_a = 25; sum_b = 4 + 4 + 1/5 = 8.2; sum_ab = 8.2; P = 1, R = 0.328,
    // error = 1 - 0.656 / 1.328.
    let error = rand_error_cremi(&binary(&["##.##"]), &binary(&["#####"])).unwrap();
    assert_close(error, 1.0 - 0.656 / 1.328);
}

#[test]
fn cremi_rand_error_of_a_merge() {
    // Two truth cells of 2 predicted as one segment of 4 (truth membrane ignored):
    // sum_a = 8, sum_b = 16, sum_ab = 8; P = 1/2, R = 1, error = 1 - 1 / 1.5 = 1/3.
    let error = rand_error_cremi(&binary(&["#####"]), &binary(&["##.##"])).unwrap();
    assert_close(error, 1.0 / 3.0);
}

#[test]
fn cremi_rand_error_counts_predicted_background_as_no_segment() {
    // The case skimage scores 5/7 (one background segment): n = 4, A = 1, B = 1, c = 2.
    // sum_a = 16, sum_b = 1 + 1 + 2/4 = 2.5 = sum_ab; P = 1, R = 2.5/16,
    // error = 1 - 2R / (1 + R).
    let scores = adapted_rand_cremi(
        &connected_components(&binary(&["#.#."]), Connectivity::Four),
        &connected_components(&binary(&["####"]), Connectivity::Four),
    )
    .unwrap();
    let recall = 2.5 / 16.0;
    assert_close(scores.precision, 1.0);
    assert_close(scores.recall, recall);
    assert_close(scores.error, 1.0 - 2.0 * recall / (1.0 + recall));
}

#[test]
fn rand_error_ignores_truth_background() {
    // The prediction covers the truth's membrane pixels with foreground: not counted.
    let truth = binary(&["##..", "##.."]);
    assert_close(rand_error(&binary(&["####", "####"]), &truth).unwrap(), 0.0);
    assert_close(rand_error(&truth, &truth).unwrap(), 0.0);
}

#[test]
fn rand_error_is_invariant_to_relabelling() {
    // truth  1 1 0 / 1 1 0 / 2 2 2,  pred  5 5 5 / 5 5 5 / 7 7 9.
    // n: (1,5) = 4, (2,7) = 2, (2,9) = 1; N = 7. both = 16 + 4 + 1 - 7 = 14;
    // truth = 16 + 9 - 7 = 18; pred = 16 + 4 + 1 - 7 = 14 (label 5 has 4 pixels in the truth
    // foreground). error = 1 - 14 / (9 + 7) = 1/8.
    let truth = labels(3, &[1, 1, 0, 1, 1, 0, 2, 2, 2]);
    let pred = labels(3, &[5, 5, 5, 5, 5, 5, 7, 7, 9]);
    let reference = adapted_rand(&pred, &truth).unwrap();
    assert_close(reference.error, 1.0 / 8.0);
    // Swap the truth's labels 1 <-> 2 (0 stays background) and rename the prediction's.
    let truth_relabelled = labels(3, &[2, 2, 0, 2, 2, 0, 1, 1, 1]);
    let pred_relabelled = labels(3, &[0, 0, 0, 0, 0, 0, 3, 3, 42]);
    let relabelled = adapted_rand(&pred_relabelled, &truth_relabelled).unwrap();
    assert_close(relabelled.error, reference.error);
    assert_close(relabelled.precision, reference.precision);
    assert_close(relabelled.recall, reference.recall);
}

#[test]
fn rand_error_without_any_pair_is_zero() {
    // No truth foreground at all: nothing to score.
    assert_close(rand_error(&binary(&["##"]), &binary(&[".."])).unwrap(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Simple points: 4-connected foreground, 8-connected background, centre value irrelevant.

fn patch(rows: [&str; 3]) -> [[bool; 3]; 3] {
    rows.map(|row| {
        let mut out = [false; 3];
        for (value, c) in out.iter_mut().zip(row.chars()) {
            *value = c == '#';
        }
        out
    })
}

#[test]
fn simple_point_predicate_on_hand_drawn_patches() {
    // Simple: on a straight edge (T4 = 1, T8 = 1).
    assert!(is_simple_point(&patch(["...", "###", "###"])));
    // Simple: the end of a line (only S is foreground).
    assert!(is_simple_point(&patch(["...", ".?.", ".#."])));
    // Simple: a convex corner, N and W joined through NW.
    assert!(is_simple_point(&patch(["##.", "#?.", "..."])));
    // Not simple: isolated pixel (T4 = 0): flipping deletes or adds an object.
    assert!(!is_simple_point(&patch(["...", ".#.", "..."])));
    // Not simple: interior pixel (T8 = 0): flipping makes or fills a hole.
    assert!(!is_simple_point(&patch(["###", "#.#", "###"])));
    // Not simple: a bridge between W and E (T4 = 2): flipping splits or merges.
    assert!(!is_simple_point(&patch(["#.#", "#.#", "#.#"])));
    // Not simple: N and W touch only through the centre (NW is background), T4 = 2.
    assert!(!is_simple_point(&patch([".#.", "#?.", "..."])));
    // Not simple: only a diagonal neighbour is foreground; it is not 4-adjacent, T4 = 0.
    assert!(!is_simple_point(&patch(["#..", "...", "..."])));
    // The background is 8-connected: N and E touch diagonally, one background component
    // (T8 = 1); NE touches the centre only diagonally, so T4 does not count it (T4 = 1).
    // Simple for the (4, 8) pair; for the (8, 4) pair NE would make T8(fg) = 2.
    assert!(is_simple_point(&patch(["#.#", "#?.", "###"])));
    // Simple: a concave corner (T4 = 1, T8 = 1).
    assert!(is_simple_point(&patch(["#..", "#?.", "###"])));
}

/// Components of the foreground (4-connected) and of the background (8-connected).
fn component_counts(map: &BinaryMap) -> (u32, u32) {
    let count = |m: &BinaryMap, c| *connected_components(m, c).pixels().iter().max().unwrap();
    let inverted = BinaryMap::new(
        map.width(),
        map.height(),
        map.pixels().iter().map(|&v| !v).collect(),
    )
    .unwrap();
    (
        count(map, Connectivity::Four),
        count(&inverted, Connectivity::Eight),
    )
}

#[test]
fn simple_points_are_exactly_the_flips_that_keep_the_component_counts() {
    // Every 3x3 neighbourhood, framed by a ring of background in a 5x5 map: flipping the
    // centre keeps the number of foreground and background components iff it is simple.
    for code in 0u32..512 {
        let mut patch = [[false; 3]; 3];
        let mut pixels = vec![false; 25];
        for bit in 0..9 {
            let (row, col) = (bit / 3, bit % 3);
            patch[row][col] = code & (1 << bit) != 0;
            pixels[(row + 1) * 5 + col + 1] = patch[row][col];
        }
        let before = BinaryMap::new(5, 5, pixels.clone()).unwrap();
        pixels[12] = !pixels[12];
        let after = BinaryMap::new(5, 5, pixels).unwrap();
        let keeps_topology = component_counts(&before) == component_counts(&after);
        assert_eq!(is_simple_point(&patch), keeps_topology, "patch {patch:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Warping error: warp the truth toward the prediction by simple points, count what is left.

const ONE_CELL: [&str; 5] = [
    ".......", //
    ".#####.", //
    ".#####.", //
    ".#####.", //
    ".......",
];

#[test]
fn warping_error_of_identical_maps_is_zero() {
    let truth = binary(&ONE_CELL);
    assert_close(warping_error(&truth, &truth).unwrap(), 0.0);
}

#[test]
fn warping_error_of_a_shifted_boundary_is_zero() {
    // One column wider on the right and one row shorter at the bottom: no topology change,
    // every disagreeing pixel is a simple point of the (warped) truth.
    let truth = binary(&ONE_CELL);
    let pred = binary(&[".......", ".######", ".######", ".......", "......."]);
    assert_close(pixel_error(&pred, &truth).unwrap(), 7.0 / 35.0);
    let warp = warp_truth(&truth, &pred, None).unwrap();
    assert_eq!(warp.mismatches, 0);
    assert_eq!(warp.warped, pred);
    assert_close(warping_error(&pred, &truth).unwrap(), 0.0);
}

#[test]
fn warping_error_of_a_split_counts_the_cut_that_cannot_be_warped() {
    // The prediction cuts the cell with a membrane line of 3 pixels at x = 3.
    // (3,1): N is background, W..S..E is one 4-connected foreground run -> simple, flipped.
    // (3,2): now N is background too, same picture -> simple, flipped.
    // (3,3): W+NW and E+NE are two foreground components (T4 = 2) -> cannot be flipped.
    // 1 pixel of the cut is left: error = 1/35.
    let truth = binary(&ONE_CELL);
    let pred = binary(&[".......", ".##.##.", ".##.##.", ".##.##.", "......."]);
    let warp = warp_truth(&truth, &pred, None).unwrap();
    assert_eq!(warp.mismatches, 1);
    assert!(*warp.warped.at(3, 3));
    assert!(!*warp.warped.at(3, 1) && !*warp.warped.at(3, 2));
    assert_close(warping_error(&pred, &truth).unwrap(), 1.0 / 35.0);
}

#[test]
fn warping_error_of_a_merge_counts_the_gap() {
    // Two cells separated by a membrane; the prediction has a one-pixel gap at (3,2).
    // Adding (3,2) to the truth's foreground would join W and E (T4 = 2): not simple.
    let truth = binary(&[".......", ".##.##.", ".##.##.", ".##.##.", "......."]);
    let pred = binary(&[".......", ".##.##.", ".#####.", ".##.##.", "......."]);
    assert_close(warping_error(&pred, &truth).unwrap(), 1.0 / 35.0);
}

#[test]
fn warping_error_of_deleted_and_added_objects() {
    // A 2x2 cell missed entirely: it shrinks by simple points to its last pixel, which
    // cannot go (T4 = 0): 1 of 36 pixels.
    let truth = binary(&["......", "......", "..##..", "..##..", "......", "......"]);
    let empty = binary(&["......"; 6]);
    assert_close(warping_error(&empty, &truth).unwrap(), 1.0 / 36.0);
    // Objects cannot be created: the 2 pixels of a spurious blob stay (each is isolated
    // in the truth, T4 = 0): 2 of 36 pixels.
    let blob = binary(&["......", "......", "..##..", "......", "......", "......"]);
    assert_close(warping_error(&blob, &empty).unwrap(), 2.0 / 36.0);
}

#[test]
fn warping_error_at_threshold_uses_the_thresholded_map() {
    // The split case as probabilities: cut pixels at 0.2, cells at 0.8, membrane at 0.1.
    let truth = binary(&ONE_CELL);
    let pred = binary(&[".......", ".##.##.", ".##.##.", ".##.##.", "......."]);
    let cut = [(3, 1), (3, 2), (3, 3)];
    let values = (0..35)
        .map(|i| match (i % 7, i / 7) {
            xy if cut.contains(&xy) => 0.2,
            _ if pred.pixels()[i] => 0.8,
            _ => 0.1,
        })
        .collect();
    let prob = ProbabilityMap::new(7, 5, values).unwrap();
    assert_close(warping_error_at(&prob, 0.5, &truth).unwrap(), 1.0 / 35.0);
    // At 0.15 the cut is foreground: the prediction equals the truth.
    assert_close(warping_error_at(&prob, 0.15, &truth).unwrap(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Threshold sweep

/// Two 3x3 cells in a 9x5 map, with three kinds of uncertain pixels:
/// X = bottom membrane under the left cell (truth background, p = 0.6): a boundary shift;
/// Y = membrane pixel between the cells (truth background, p = 0.4): a merge;
/// Z = top-right corner of the right cell (truth foreground, p = 0.7): a boundary shift.
/// Other cell pixels have p = 0.9, other membrane pixels p = 0.1.
fn crafted() -> (ProbabilityMap, BinaryMap) {
    let truth = binary(&[
        ".........", //
        ".###.###.", //
        ".###.###.", //
        ".###.###.", //
        ".........",
    ]);
    let uncertain = |x: usize, y: usize| match (x, y) {
        (1..=3, 4) => Some(0.6), // X
        (4, 2) => Some(0.4),     // Y
        (7, 1) => Some(0.7),     // Z
        _ => None,
    };
    let values = (0..45)
        .map(|i| {
            let (x, y) = (i % 9, i / 9);
            uncertain(x, y).unwrap_or(if truth.pixels()[i] { 0.9 } else { 0.1 })
        })
        .collect();
    (ProbabilityMap::new(9, 5, values).unwrap(), truth)
}

// Expected values at thresholds 0.25, 0.5, 0.75 (N = 45, 18 truth-foreground pixels):
// t = 0.25: X, Y foreground. pixel 4/45; warping 1/45 (Y; X is warped away);
//           Rand: one predicted segment over both 9-pixel cells, both = 81 + 81 - 18 = 144,
//           truth = 144, pred = 18^2 - 18 = 306, error = 1 - 144/225 = 0.36;
//           IoU = 18 / 22.
// t = 0.5:  X foreground. pixel 3/45; warping 0; Rand 0 (truth background ignored);
//           IoU = 18 / 21.
// t = 0.75: Z background. pixel 1/45; warping 0; Rand: Z in label 0,
//           both = 81 + 64 + 1 - 18 = 128, truth = 144, pred = 128, error = 1 - 128/136 = 1/17;
//           IoU = 17 / 18.
const SWEEP: [f32; 3] = [0.25, 0.5, 0.75];

#[test]
fn sweep_reports_every_threshold() {
    let (prob, truth) = crafted();
    let report = sweep_image(&prob, &truth, &SWEEP).unwrap();
    let expected = [
        (4.0 / 45.0, 0.36, 1.0 / 45.0, 18.0 / 22.0),
        (3.0 / 45.0, 0.0, 0.0, 18.0 / 21.0),
        (1.0 / 45.0, 1.0 / 17.0, 0.0, 17.0 / 18.0),
    ];
    for (scores, (pixel, rand, warping, iou)) in report.per_threshold.iter().zip(expected) {
        assert_close(scores.pixel_error, pixel);
        assert_close(scores.rand_error, rand);
        assert_close(scores.warping_error, warping);
        assert_close(scores.iou, iou);
    }
    assert_eq!(report.per_threshold.len(), 3);
}

#[test]
fn sweep_picks_the_best_threshold_of_each_metric() {
    let (prob, truth) = crafted();
    let best = sweep_image(&prob, &truth, &SWEEP).unwrap().best;
    assert_close(best.pixel_error.value, 1.0 / 45.0);
    assert_eq!(best.pixel_error.threshold, 0.75);
    assert_close(best.rand_error.value, 0.0);
    assert_eq!(best.rand_error.threshold, 0.5);
    // Warping error 0 at both 0.5 and 0.75: the first listed wins.
    assert_close(best.warping_error.value, 0.0);
    assert_eq!(best.warping_error.threshold, 0.5);
    assert_close(best.iou.value, 17.0 / 18.0);
    assert_eq!(best.iou.threshold, 0.75);
}

#[test]
fn evaluate_averages_images_per_threshold_and_serialises() {
    // Image 2 is predicted perfectly at every threshold in SWEEP, so every mean is half of
    // image 1's error (and IoU (x + 1) / 2).
    let (prob, truth) = crafted();
    let perfect = ProbabilityMap::new(
        9,
        5,
        truth
            .pixels()
            .iter()
            .map(|&t| if t { 0.9 } else { 0.1 })
            .collect(),
    )
    .unwrap();
    let report = evaluate(&[(prob, truth.clone()), (perfect, truth)], &SWEEP).unwrap();
    assert_eq!(report.images.len(), 2);
    assert_close(report.mean[0].pixel_error, 2.0 / 45.0);
    assert_close(report.mean[0].rand_error, 0.18);
    assert_close(report.mean[0].warping_error, 0.5 / 45.0);
    assert_close(report.mean[2].iou, (17.0 / 18.0 + 1.0) / 2.0);
    assert_close(report.best_mean.pixel_error.value, 0.5 / 45.0);
    assert_eq!(report.best_mean.pixel_error.threshold, 0.75);
    assert_eq!(report.best_mean.rand_error.threshold, 0.5);

    let json = serde_json::to_string(&report).unwrap();
    let back: unet_wgpu::metrics::EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn sweep_rejects_empty_inputs() {
    let (prob, truth) = crafted();
    assert_eq!(
        sweep_image(&prob, &truth, &[]).unwrap_err(),
        MetricsError::NoThresholds
    );
    assert_eq!(evaluate(&[], &SWEEP).unwrap_err(), MetricsError::NoImages);
}

#[test]
fn default_thresholds_are_twentieths() {
    let thresholds = default_thresholds();
    assert_eq!(thresholds.len(), 19);
    for (k, t) in thresholds.iter().enumerate() {
        assert!((t - (k + 1) as f32 * 0.05).abs() < 1e-6, "{thresholds:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Unlabelled pixels (`--ignore-index`): left out of every metric. In the drawings of the
// ignored maps `#` marks an unlabelled pixel.

fn probabilities(map: &BinaryMap) -> ProbabilityMap {
    let values = map.pixels().iter().map(|&v| f32::from(v)).collect();
    ProbabilityMap::new(map.width(), map.height(), values).unwrap()
}

#[test]
fn pixel_error_and_iou_count_labelled_pixels_only() {
    // Pixel 1 disagrees but is unlabelled; of the 3 labelled pixels, pixel 2 disagrees.
    let (pred, truth, ignored) = (binary(&["##.."]), binary(&["#.#."]), binary(&[".#.."]));
    assert_close(pixel_error(&pred, &truth).unwrap(), 2.0 / 4.0);
    assert_close(
        pixel_error_ignoring(&pred, &truth, Some(&ignored)).unwrap(),
        1.0 / 3.0,
    );
    // Pixel 0 unlabelled: P = {1, 2}, G = {1}, IoU 1/2 (every pixel: P ∪ G = {0, 1, 2}).
    let (pred, truth, ignored) = (binary(&[".##."]), binary(&["##.."]), binary(&["#..."]));
    assert_close(iou(&pred, &truth).unwrap(), 1.0 / 3.0);
    assert_close(iou_ignoring(&pred, &truth, Some(&ignored)).unwrap(), 0.5);
    // Nothing labelled: no error, and the empty sets agree.
    let all = binary(&["####"]);
    assert_close(
        pixel_error_ignoring(&pred, &truth, Some(&all)).unwrap(),
        0.0,
    );
    assert_close(iou_ignoring(&pred, &truth, Some(&all)).unwrap(), 1.0);
    // None means every pixel; a map of another size is an error.
    assert_close(
        pixel_error_ignoring(&pred, &truth, None).unwrap(),
        pixel_error(&pred, &truth).unwrap(),
    );
    assert!(matches!(
        pixel_error_ignoring(&pred, &truth, Some(&binary(&["#"]))).unwrap_err(),
        MetricsError::SizeMismatch { .. }
    ));
}

#[test]
fn rand_errors_leave_unlabelled_pixels_out_of_every_pair() {
    // The truth's one cell has an unlabelled pixel in its middle; the prediction splits it
    // there (and, the other way round, joins two cells through it). Without the pixel
    // both maps are the same two segments: no error. Counting it, there is one.
    let ignored = binary(&["..#.."]);
    for (pred, truth) in [
        (binary(&["##.##"]), binary(&["#####"])),
        (binary(&["#####"]), binary(&["##.##"])),
    ] {
        assert!(rand_error(&pred, &truth).unwrap() > 0.1);
        assert!(rand_error_cremi(&pred, &truth).unwrap() > 0.1);
        assert_close(
            rand_error_ignoring(&pred, &truth, Some(&ignored)).unwrap(),
            0.0,
        );
        assert_close(
            rand_error_cremi_ignoring(&pred, &truth, Some(&ignored)).unwrap(),
            0.0,
        );
    }
    // A labelled mistake still counts: skimage's form as worked out above for "#.#." vs
    // "####" (error 2/3), with a fifth, unlabelled pixel that the prediction gets wrong.
    let (pred, truth, ignored) = (binary(&["#.#.#"]), binary(&["####."]), binary(&["....#"]));
    assert_close(
        rand_error_ignoring(&pred, &truth, Some(&ignored)).unwrap(),
        rand_error(&binary(&["#.#."]), &binary(&["####"])).unwrap(),
    );
}

#[test]
fn warping_error_does_not_compare_unlabelled_pixels() {
    // Two cells with a membrane column x = 3 between them; the prediction joins them
    // across it. Neither cut pixel can be flipped (each would join the cells): 2 of 28.
    let truth = binary(&[".......", ".##.##.", ".##.##.", "......."]);
    let pred = binary(&[".......", ".#####.", ".#####.", "......."]);
    let prob = probabilities(&pred);
    assert_close(warping_error_at(&prob, 0.5, &truth).unwrap(), 2.0 / 28.0);
    // The column unlabelled: nothing is known there, so the join costs nothing.
    let strip = binary(&["...#...", "...#...", "...#...", "...#..."]);
    assert_close(
        warping_error_at_ignoring(&prob, 0.5, &truth, Some(&strip)).unwrap(),
        0.0,
    );
    // A spurious one-pixel object in the labelled part still counts, over the 24
    // labelled pixels.
    let with_blob = binary(&["#......", ".#####.", ".#####.", "......."]);
    assert_close(
        warping_error_at_ignoring(&probabilities(&with_blob), 0.5, &truth, Some(&strip)).unwrap(),
        1.0 / 24.0,
    );
}

#[test]
fn the_sweep_with_unlabelled_pixels_is_the_sweep_of_the_labelled_ones() {
    // Every metric at once: a column that the prediction gets wrong, unlabelled, leaves
    // exactly the scores of a perfect prediction; with no unlabelled pixel the triple
    // form equals `evaluate`.
    let truth = binary(&[".......", ".##.##.", ".##.##.", "......."]);
    let pred = binary(&[".......", ".#####.", ".#####.", "......."]);
    let strip = binary(&["...#...", "...#...", "...#...", "...#..."]);
    let scores = scores_at_ignoring(&probabilities(&pred), &truth, Some(&strip), 0.5).unwrap();
    assert_eq!(
        (
            scores.pixel_error,
            scores.rand_error,
            scores.rand_error_cremi,
            scores.warping_error,
            scores.iou
        ),
        (0.0, 0.0, 0.0, 0.0, 1.0)
    );
    let images = [(probabilities(&pred), truth.clone())];
    let plain = evaluate(&images, &default_thresholds()).unwrap();
    let triples = [(probabilities(&pred), truth.clone(), None)];
    assert_eq!(
        evaluate_ignoring(&triples, &default_thresholds()).unwrap(),
        plain
    );
    let masked = [(probabilities(&pred), truth, Some(strip))];
    let report = evaluate_ignoring(&masked, &default_thresholds()).unwrap();
    assert_close(report.best_mean.warping_error.value, 0.0);
    assert_close(report.best_mean.iou.value, 1.0);
}

#[test]
fn a_class_map_gives_the_truth_of_one_class_and_its_unlabelled_pixels() {
    // Classes 0, 1, 2 and unlabelled (255) in a 4x1 map.
    let (truth, ignored) = binary_truth(4, 1, &[0, 1, 2, 255], 2).unwrap();
    assert_eq!(truth.pixels(), &[false, false, true, false]);
    assert_eq!(ignored.unwrap().pixels(), &[false, false, false, true]);
    let (truth, ignored) = binary_truth(2, 1, &[1, 0], 1).unwrap();
    assert_eq!(truth.pixels(), &[true, false]);
    assert!(ignored.is_none(), "no unlabelled pixel, no map");
}

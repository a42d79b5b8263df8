#!/usr/bin/env bash
# The v2 synthetic data sets (generator v2, docs/data.md), fixed seeds; outside the repository.
#   tools/make_v2_data.sh ROOT STAGE...     STAGE: calib train val test early old_patterns asym fresh draw3 adult elderly atrophy_max leuko fresh_darken test_darken early_darken haem haem_check aligned aligned_contra aligned_test
# calib: 16 normal studies (4 per anatomy source; 5, 5, 2.5 and 1 mm) for calibrating region
#        evidence; ROOT/ph_calib/READY when complete.
# train: $V2_TRAIN_COUNT (default 49) studies, split train (SOOP lesion masks of the train split;
#        template / scct / GE heads), kinds and HU drops as drawn (v2: 62 % acute, 2-4 HU 38 % of
#        them), seeds 1..N (each study depends on its seed alone: seeds 1-49 are the same for any N).
# val:   $V2_VAL_COUNT (default 6) studies, split val, seeds 500.. (model selection only).
#        train and val: $V2_HEAD_SIZE (default legacy, the shipped model's data) = adult makes them
#        at adult head sizes, and $V2_ATROPHY (default none) = elderly in older brains: the data for
#        a next model (docs/training.md).
# fresh: the test recipe with seeds 4000-4027 and 4100-4115 (session 24; tools/splits/v2_fresh.json).
# draw3: the test recipe again with seeds 8000-8027 and 8100-8115 (session 36; tools/splits/v2_draw3.json).
# adult: the test recipe with adult head sizes (the generator's --head-size default since session 40;
#        everything else as the three draws above), seeds 10000-10027 and 10100-10115
#        (tools/splits/v2_adult.json).
# elderly: the adult draw again with age-related atrophy (--atrophy elderly: severity drawn 0..1 from
#        the seed, everything else the seed draws unchanged), the same seeds: each study is the
#        adult draw's study of its seed in an older brain (session 41; tools/splits/v2_elderly.json).
# atrophy_max: 16 normal studies at the greatest atrophy (--atrophy-severity 1), every head at 5 and
#        1 mm twice (seeds 11000-11015; session 41; tools/splits/v2_atrophy_max.json).
# leuko: 16 leukoaraiosis controls, every head at 5 and 1 mm twice (seeds 9000-9015), painted as the
#        generator now does (--leukoaraiosis white-matter) in ph_leuko and as the sets above were
#        (legacy) in ph_leuko_legacy (session 38; tools/splits/v2_leuko.json, v2_leuko_legacy.json).
# fresh_darken, test_darken, early_darken: the fresh draw's / the test split's 28 acute studies
#        and the early set's 48, with --contrast-loss darken (session 26; same seeds: same lesion,
#        head, pose and noise).
# haem:  16 haemorrhage controls, every head at 5 and 1 mm twice (seeds 5000-5015, session 24).
# haem_check: 16 more haemorrhage controls and 16 normal heads (seeds 5100-5115, 5200-5215, session 27).
# test:  split test: 28 acute studies (seeds 1000-1027; thickness, source, HU drop as drawn) + the
#        four controls (normal, old infarct, haemorrhage, leukoaraiosis) on every anatomy source,
#        two at 5 mm and two at 1 mm per source and per kind (seeds 1100-1115): 44 studies.
#        Archived: tools/splits/v2_test.json; check a rebuild with
#        aspects-split-manifest --cases ROOT/ph_test --check tools/splits/v2_test.json
# early: 48 acute studies of early ischaemic change in one MCA region (M1-M6, insula) or the
#        lentiform + internal capsule (deep), 40-100 % of each region covered, at 3, 5 and 8 HU, on
#        the InVesalius and scct heads, 5 and 1 mm alternating (seeds 2000-2047): the detection
#        limit for single-region change on heads the model never saw (docs/results_v2.md).
# old_patterns: 16 old-infarct controls (CSF-like core, gliotic rim, ex-vacuo change) in the MCA
#        sub-territory shapes (M1-M6, insula, deep) on the InVesalius and scct heads, 5 and 1 mm
#        alternating (seeds 3000-3015): the independent check's kind of old infarct, not SOOP-shaped.
#        Archived: tools/splits/v2_old_patterns.json.
# asym:  16 normal studies on the real InVesalius head as scanned (--no-balance: its own ~1 HU
#        right-darker MCA asymmetry kept; seeds 6000-6015, thickness, pose and noise as drawn) in
#        ph_asym, and the same seeds balanced in ph_asym_balanced: specificity on a naturally
#        asymmetric normal head (session 32, docs/results_v2.md).
# aligned, aligned_test: the aligned volumes + datalists for train/infarct_seg (aspects-make-datalist).
# aligned_contra: the same for train and val with the deformed mirror (--contra: the shipped model's
#        second channel), in ROOT/aligned_contra (what gpu_train pack takes; docs/training.md).
set -euo pipefail
ROOT=${1:?usage: tools/make_v2_data.sh ROOT STAGE...}
shift
# The sets made before session 26 (calib .. haem) keep the grey-white contrast loss they were made
# with ("compress"; their manifests in tools/splits/ and the shipped model's training data); the
# *_darken stages make some of them again with v2's physical default ("darken").
# Every set made before session 38 keeps the leukoaraiosis it was made with ("legacy": into the cortex
# of the real InVesalius head; docs/data.md); the leuko stage makes it as the generator now does.
# Every set made before session 40 keeps the head sizes it was made with ("legacy": scale 0.9-1.1 on
# every source; the generator now draws an adult brain volume, docs/data.md "Head size").
MK="aspects-make-phantoms --generator v2 --preview --contrast-loss compress --leukoaraiosis legacy --head-size legacy"
MK_DARKEN="aspects-make-phantoms --generator v2 --preview --contrast-loss darken --leukoaraiosis legacy --head-size legacy"
MK_ADULT="aspects-make-phantoms --generator v2 --preview --contrast-loss compress --leukoaraiosis legacy"
MK_NOW="aspects-make-phantoms --generator v2 --preview --contrast-loss compress --head-size legacy"
SOURCES="template scct ge invesalius"

# test_recipe OUT ACUTE_SEED CONTROL_SEED [COMMAND]: 28 acute studies (seeds ACUTE_SEED..+27;
# thickness, source, HU drop as drawn) + the four controls on every anatomy source, 5 and 1 mm
# alternating (seeds CONTROL_SEED..+15): 44 studies, made with COMMAND (default $MK).
test_recipe() {
  local out=$1 seed=$3 th=5 mk=${4:-$MK}
  $mk --out "$out" --split test --kind acute --count 28 --seed "$2"
  for src in $SOURCES; do
    for kind in normal old_infarct haemorrhage leukoaraiosis; do
      $mk --out "$out" --split test --kind "$kind" --anatomy "$src" --thickness $th --seed $seed
      seed=$((seed + 1))
      th=$([ "$th" = 5 ] && echo 1 || echo 5)
    done
    th=$([ "$th" = 5 ] && echo 1 || echo 5)
  done
}
for stage in "$@"; do
  case $stage in
    calib)
      rm -f "$ROOT/ph_calib/READY"
      seed=7000
      for src in $SOURCES; do
        for th in 5 5 2.5 1; do
          $MK --out "$ROOT/ph_calib" --split val --kind normal --anatomy "$src" --thickness "$th" --seed $seed
          seed=$((seed + 1))
        done
      done
      date -u +%FT%TZ > "$ROOT/ph_calib/READY" ;;
    train)
      $MK --out "$ROOT/ph_train" --split train --count "${V2_TRAIN_COUNT:-49}" --seed 1 --head-size "${V2_HEAD_SIZE:-legacy}" --atrophy "${V2_ATROPHY:-none}" ;;
    val)
      $MK --out "$ROOT/ph_val" --split val --count "${V2_VAL_COUNT:-6}" --seed 500 --head-size "${V2_HEAD_SIZE:-legacy}" --atrophy "${V2_ATROPHY:-none}" ;;
    test)
      test_recipe "$ROOT/ph_test" 1000 1100 ;;
    early|early_darken)
      # single-region (and two-region deep) early ischaemic change in the MCA sub-territory shapes
      # of the v1 patterns, on the two heads never used for training, at 3 / 5 / 8 HU: the
      # independent check's kind of study (issue 13), not drawn from the SOOP masks;
      # early_darken: the same 48 studies with --contrast-loss darken (session 26)
      out="$ROOT/ph_early" mk=$MK
      [ "$stage" = early_darken ] && out="$ROOT/ph_early_darken" mk=$MK_DARKEN
      seed=2000
      th=5
      for src in invesalius scct; do
        for pattern in M1 M2 M3 M4 M5 M6 insula deep; do
          for hu in 3 5 8; do
            $mk --out "$out" --split test --kind acute --anatomy "$src" --pattern "$pattern" \
                --hu-drop "$hu" --thickness "$th" --seed $seed
            seed=$((seed + 1))
            th=$([ "$th" = 5 ] && echo 1 || echo 5)
          done
        done
      done ;;
    old_patterns)
      seed=3000
      th=5
      for src in invesalius scct; do
        for pattern in M1 M2 M3 M4 M5 M6 insula deep; do
          $MK --out "$ROOT/ph_old_patterns" --split test --kind old_infarct --anatomy "$src" --pattern "$pattern" \
              --thickness "$th" --seed $seed
          seed=$((seed + 1))
          th=$([ "$th" = 5 ] && echo 1 || echo 5)
        done
        th=$([ "$th" = 5 ] && echo 1 || echo 5)
      done ;;
    asym)
      $MK_DARKEN --out "$ROOT/ph_asym" --split test --kind normal --anatomy invesalius --no-balance --count 16 --seed 6000
      $MK_DARKEN --out "$ROOT/ph_asym_balanced" --split test --kind normal --anatomy invesalius --count 16 --seed 6000 ;;
    fresh)
      # the test stage's recipe with new seeds, made in session 24 after the rules of sessions
      # 5-23 were chosen: an independent estimate of the test split's figures.
      # Archived: tools/splits/v2_fresh.json.
      test_recipe "$ROOT/ph_fresh" 4000 4100 ;;
    draw3)
      # a third draw of the test recipe (session 36), made when no rule was being chosen: pooled
      # with the test split and the fresh draw for the figure to quote. Archived: tools/splits/v2_draw3.json.
      test_recipe "$ROOT/ph_draw3" 8000 8100 ;;
    adult)
      # The test recipe on adult-sized heads (session 40, docs/results_v2.md "Adult head sizes").
      test_recipe "$ROOT/ph_adult" 10000 10100 "$MK_ADULT" ;;
    elderly)
      # The adult draw in older brains (session 41, docs/results_v2.md "Atrophy").
      test_recipe "$ROOT/ph_elderly" 10000 10100 "$MK_ADULT --atrophy elderly" ;;
    atrophy_max)
      seed=11000
      for src in $SOURCES; do
        for th in 5 1 5 1; do
          $MK_ADULT --out "$ROOT/ph_atrophy_max" --split test --kind normal --anatomy "$src" --thickness "$th" \
              --atrophy-severity 1 --seed $seed
          seed=$((seed + 1))
        done
      done ;;
    test_darken|fresh_darken)
      # the test split's (seeds 1000-1027) or the fresh draw's (4000-4027) 28 acute studies, same
      # seeds (same lesion, head, pose, noise), with the grey-white contrast loss that never
      # brightens tissue (session 26, docs/data.md): what the old physics did to the figures
      seed=$([ "$stage" = test_darken ] && echo 1000 || echo 4000)
      $MK_DARKEN --out "$ROOT/ph_$stage" --split test --kind acute --count 28 --seed $seed ;;
    haem)
      # 16 more haemorrhage controls (session 24): every head at 5 and 1 mm, twice, seeds 5000-5015,
      # for the haemorrhage flag's sensitivity (docs/results_v2.md, "A fresh draw of the test recipe")
      seed=5000
      for src in $SOURCES; do
        for th in 5 1 5 1; do
          $MK --out "$ROOT/ph_haem" --split val --kind haemorrhage --anatomy "$src" --thickness $th --seed $seed
          seed=$((seed + 1))
        done
      done ;;
    haem_check)
      # held out from the rim blood search's choice (session 27): 16 more haemorrhage controls and
      # 16 normal heads, every head at 5 and 1 mm twice (seeds 5100-5115, 5200-5215)
      for kind in haemorrhage normal; do
        seed=$([ "$kind" = haemorrhage ] && echo 5100 || echo 5200)
        for src in $SOURCES; do
          for th in 5 1 5 1; do
            $MK_DARKEN --out "$ROOT/ph_haem_check" --split val --kind $kind --anatomy "$src" --thickness $th --seed $seed
            seed=$((seed + 1))
          done
        done
      done ;;
    leuko)
      for out in ph_leuko ph_leuko_legacy; do
        mk=$MK_NOW
        [ "$out" = ph_leuko_legacy ] && mk=$MK
        seed=9000 th=5
        for src in $SOURCES; do
          for rep in 1 2 3 4; do
            $mk --out "$ROOT/$out" --split val --kind leukoaraiosis --anatomy "$src" --thickness $th --seed $seed
            seed=$((seed + 1)) th=$([ "$th" = 5 ] && echo 1 || echo 5)
          done
        done
      done ;;
    aligned)
      aspects-make-datalist --phantoms "$ROOT/ph_train" --val-phantoms "$ROOT/ph_val" --out "$ROOT/aligned" --workers 2 ;;
    aligned_contra)
      aspects-make-datalist --phantoms "$ROOT/ph_train" --val-phantoms "$ROOT/ph_val" --out "$ROOT/aligned_contra" --workers 2 --contra ;;
    aligned_test)
      aspects-make-datalist --phantoms "$ROOT/ph_test" --val-phantoms "$ROOT/ph_test" --out "$ROOT/aligned_test" --workers 2 ;;
    *) echo "error[2]: unknown stage $stage (calib train val test early old_patterns asym fresh draw3 adult leuko fresh_darken test_darken early_darken haem haem_check aligned aligned_contra aligned_test)" >&2; exit 2 ;;
  esac
done

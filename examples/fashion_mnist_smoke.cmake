# The Fashion-MNIST example on 14 x 14 images with a few steps of everything (ctest fashion_mnist_smoke):
# every recipe runs to the end and writes its files, two runs with the same seed write the same sample
# grids byte for byte, and the errors a user can cause are named. -DEXE=<fashion_mnist> -DOUT=<folder>.
file(REMOVE_RECURSE ${OUT})
set(small --size 14 --classifier-steps 20 --samples 32 --sample-batch 16 --batch 16)

function(run_ok)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fashion_mnist ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

function(run_fails expected)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "fashion_mnist ${ARGN} succeeded; expected an error naming '${expected}'")
  endif()
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "fashion_mnist ${ARGN}: the error does not name '${expected}':\n${err}")
  endif()
endfunction()

# Fails unless the run's results.md (in folder `run`) holds every string after the first argument.
function(require_in run)
  file(READ ${OUT}/${run}/results.md results)
  foreach(expected ${ARGN})
    string(FIND "${results}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "${run}/results.md lacks '${expected}':\n${results}")
    endif()
  endforeach()
endfunction()

# The score SDE recipe, twice with the same seed.
foreach(run a b)
  run_ok(${small} --steps 3 --pc-steps 4 --ode-samples 4 --likelihood 4 --guide-steps 3 --guided 2
         --output ${OUT}/${run})
endforeach()
foreach(file results.md classifier.ckpt sde.ckpt sde_pc_samples.png sde_ode_samples.png sde_inpainting.png
             sde_trajectory.png guide_classifier.ckpt sde_guided_w0.png sde_guided_w1.png sde_guided_w4.png)
  if(NOT EXISTS ${OUT}/a/${file})
    message(FATAL_ERROR "the sde recipe did not write ${file}")
  endif()
endforeach()
foreach(file sde_pc_samples.png sde_ode_samples.png sde_inpainting.png sde_trajectory.png classifier.ckpt sde.ckpt
             guide_classifier.ckpt sde_guided_w4.png)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT}/a/${file} ${OUT}/b/${file} RESULT_VARIABLE differ)
  if(NOT differ EQUAL 0)
    message(FATAL_ERROR "two runs with the same seed wrote different ${file}")
  endif()
endforeach()
require_in(a "test accuracy" "predictor-corrector" "probability-flow ODE" "Inpainting" "Bits/dim" "floor"
           "Classifier guidance" "| 4 | 20 |")

# Likelihood weighting: it trains and says so, and it is part of the checkpoint's signature (the
# unweighted run's checkpoint is refused).
run_ok(${small} --steps 2 --pc-steps 2 --ode-samples 0 --likelihood 4 --guide-steps 0 --likelihood-weighting
       --output ${OUT}/weighted)
require_in(weighted "(likelihood weighting, g(t)^2)" "Bits/dim")
file(COPY_FILE ${OUT}/a/sde.ckpt ${OUT}/weighted/sde.ckpt)
run_fails("signature mismatch" ${small} --resume --steps 3 --likelihood-weighting --output ${OUT}/weighted)

# The NCSNv2 recipe and the table of noise levels.
run_ok(${small} --recipe ncsnv2 --steps 2 --output ${OUT}/ncsnv2)
if(NOT EXISTS ${OUT}/ncsnv2/ncsnv2_samples.png)
  message(FATAL_ERROR "the ncsnv2 recipe wrote no samples")
endif()
run_ok(${small} --recipe ladder --steps 2 --samples 16 --output ${OUT}/ladder)
require_in(ladder "| 20 |")  # the noise-level table reaches L = 20

# Errors: no data set, a budget too small for one step, a checkpoint of another network.
run_fails("dataset-fashion-mnist" ${small} --data ${OUT}/nowhere --output ${OUT}/c)
run_fails("too small" ${small} --minutes 0.000001 --output ${OUT}/c)
file(COPY_FILE ${OUT}/ncsnv2/ncsnv2.ckpt ${OUT}/c/sde.ckpt)
run_fails("signature mismatch" ${small} --resume --steps 3 --output ${OUT}/c)
run_fails("--size must be 28 or 14" --size 20)
run_fails("--likelihood-weighting applies to --recipe sde only" --recipe ncsnv2 --likelihood-weighting)
run_fails("--guidance-scales takes numbers >= 0" --guidance-scales 1,-2)

// Internal to the study layer: one function per figure recipe, each in its own file for the
// theory figures (fig1.cpp, ...); figures() in figures.cpp lists them in the paper's order.
#pragma once

#include <string>
#include <vector>

#include "src/study/figures.h"

namespace ng {

FigureRun figure_run(const std::string& experiment, const std::string& label,
                     std::vector<SpectrumRequest> spectra = {},
                     std::vector<EscapeRequest> escapes = {}, bool needs_minimum = true);

Figure figure1();
Figure figure2a();
Figure figure2b();
Figure figure3();
Figure figure4();
Figure figure5();
Figure figure6();
Figure figureA();  // figA.cpp

}  // namespace ng

// Replaced by the model registry.
namespace ng {}

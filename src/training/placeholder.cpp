// Replaced by the trainer.
namespace ng {}

// Replaced by the CIFAR-10 reader.
namespace ng {}

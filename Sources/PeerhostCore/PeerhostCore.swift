// PeerhostCore
